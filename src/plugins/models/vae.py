"""The variational autoencoder (book 1st ed. 8.4, 2nd ed. 12.4).

Encoder: ``Conv2D(32, 3, stride 2) -> Conv2D(64, 3, stride 2) -> Dense(16) -> z_mean,
z_log_var``; a latent point is drawn with the reparameterisation trick
``z = z_mean + exp(z_log_var / 2) * eps``; decoder: ``Dense -> reshape ->
Conv2DTranspose(64, 32, stride 2) -> Conv2D(channels, 3, sigmoid)``. The loss is the 2nd
edition's: binary cross-entropy summed over the pixels, averaged over the batch, plus the
KL divergence between ``N(z_mean, exp(z_log_var))`` and ``N(0, I)`` averaged over the batch
*and the latent axes*, as the book's ``tf.reduce_mean(kl_loss)`` does (both editions average
over the latent axes; the ELBO would sum them, weighting the KL term ``latent_dim`` times).

Any image size works: the decoder starts from the encoder's own spatial size (measured
with a dummy pass) and its output is cropped (or padded) to the input's size, so 8x8
digits, 28x28 MNIST and 32x32 RGB images all reconstruct at their own shape.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from pipelines.api import (
    ConfigValueError,
    KernelSize,
    LayerSize,
    LayerSizes,
    LearningRate,
    Penalty,
    Width,
)
from plugins.models.base import scaled
from plugins.models.generative import GENERATION, EpochSamples
from plugins.models.image_grid import save_image_grid
from plugins.models.initialisation import Init, initialise
from plugins.models.optimizers import OPTIMIZERS, check_optimizer


def kl_divergence(z_mean: torch.Tensor, z_log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) per sample: the book's
    ``-0.5 * sum(1 + z_log_var - z_mean^2 - exp(z_log_var))`` over the latent axis."""
    return -0.5 * (1 + z_log_var - z_mean.pow(2) - z_log_var.exp()).sum(dim=1)


def vae_loss(
    logits: torch.Tensor, images: torch.Tensor, z_mean: torch.Tensor, z_log_var: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, reconstruction, KL term), each averaged over the batch; the KL term over the
    latent axes too (the book's weighting, see the module's docstring).

    Reconstruction: binary cross-entropy between the images and ``sigmoid(logits)``, summed
    over every pixel value (all channels: the log-likelihood of the whole image; for one
    channel exactly the 2nd edition's sum over height and width). Computed from logits,
    which is the same number as the book's sigmoid-then-cross-entropy, without its clipping.
    """
    reconstruction = (
        F.binary_cross_entropy_with_logits(logits, images, reduction="none")
        .flatten(start_dim=1)
        .sum(dim=1)
        .mean()
    )
    kl = kl_divergence(z_mean, z_log_var).mean() / z_mean.shape[1]
    return reconstruction + kl, reconstruction, kl


def fit_to(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop (bottom/right) or zero-pad ``images`` (N, C, h, w) to (N, C, height, width)."""
    images = images[..., :height, :width]
    missing_h, missing_w = height - images.shape[-2], width - images.shape[-1]
    if missing_h > 0 or missing_w > 0:
        images = F.pad(images, (0, max(0, missing_w), 0, max(0, missing_h)))
    return images


class VAE(L.LightningModule):
    """The book's convolutional VAE; ``generate`` draws its latent-space figure and samples.

    ``num_classes`` is accepted (the image data passes it) and ignored: the VAE never sees
    the labels. ``samples_every_n_epochs`` (0: never) sets how often the run gets the
    figures under ``samples/epoch-NNN/`` while training.
    """

    #: samples are all it makes: stages that score predictions refuse it (see GENERATION)
    task: ClassVar[str] = GENERATION

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int | None = None,
        latent_dim: LayerSize = 2,
        filters: LayerSizes = (32, 64),
        kernel_size: KernelSize = 3,
        dense_units: LayerSize = 16,
        width: Width = 1.0,
        optimizer: str = "adam",
        lr: LearningRate = 1e-3,
        weight_decay: Penalty = 0.0,
        optimizer_args: dict[str, Any] | None = None,
        init: Init = "keras",
        samples_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if len(input_shape) != 3:
            raise ConfigValueError(
                f"model=vae needs images (channels, height, width); the data gives shape "
                f"{tuple(input_shape)}. Use an image dataset (digits, mnist, cifar10, ...)."
            )
        if latent_dim < 1:
            raise ConfigValueError(f"'model.latent_dim' must be at least 1, got {latent_dim}.")
        self.optimizer_args = check_optimizer(optimizer, optimizer_args)
        if not filters:
            raise ConfigValueError("'model.filters' needs at least one convolution.")
        self.input_shape = tuple(int(size) for size in input_shape)
        self.latent_dim = latent_dim
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.samples_every_n_epochs = samples_every_n_epochs
        channels, height, width_px = self.input_shape
        sizes = scaled(filters, width)
        (dense,) = scaled((dense_units,), width)
        padding = kernel_size // 2

        layers: list[nn.Module] = []
        previous = channels
        for size in sizes:
            layers += [nn.Conv2d(previous, size, kernel_size, stride=2, padding=padding), nn.ReLU()]
            previous = size
        convolutions = nn.Sequential(*layers)
        with torch.no_grad():
            self.feature_shape = tuple(convolutions(torch.zeros(1, *self.input_shape)).shape[1:])
        if min(self.feature_shape[1:]) < 1:
            raise ConfigValueError(
                f"Images of {height}x{width_px} are too small for {len(sizes)} stride-2 "
                "convolutions; use fewer 'model.filters'."
            )
        flat = math.prod(self.feature_shape)
        self.encoder = nn.Sequential(convolutions, nn.Flatten(), nn.Linear(flat, dense), nn.ReLU())
        self.z_mean = nn.Linear(dense, latent_dim)
        self.z_log_var = nn.Linear(dense, latent_dim)

        layers = [
            nn.Linear(latent_dim, flat),
            nn.ReLU(),
            nn.Unflatten(1, self.feature_shape),
        ]
        previous = sizes[-1]
        for size in reversed(sizes):
            layers += [
                nn.ConvTranspose2d(
                    previous,
                    size,
                    kernel_size,
                    stride=2,
                    padding=padding,
                    output_padding=1,
                ),
                nn.ReLU(),
            ]
            previous = size
        self.decoder = nn.Sequential(*layers)
        # the book's last Conv2D(channels, 3, sigmoid): logits here, sigmoid in decode()
        self.output = nn.Conv2d(previous, channels, kernel_size, padding=padding)
        initialise(self, init)

    # -- the model ---------------------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_mean, z_log_var) of each image."""
        hidden = self.encoder(images)
        return self.z_mean(hidden), self.z_log_var(hidden)

    @staticmethod
    def reparameterize(z_mean: torch.Tensor, z_log_var: torch.Tensor) -> torch.Tensor:
        """A latent point ``z_mean + exp(z_log_var / 2) * eps``, ``eps ~ N(0, I)``: random,
        yet differentiable in ``z_mean`` and ``z_log_var``."""
        return z_mean + (0.5 * z_log_var).exp() * torch.randn_like(z_mean)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        _, height, width = self.input_shape
        return fit_to(self.output(self.decoder(z)), height, width)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], of the input's shape, for latent points ``z`` (N, latent_dim)."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The reconstruction (a sampled latent point decoded) of ``images``."""
        z_mean, z_log_var = self.encode(images)
        return self.decode(self.reparameterize(z_mean, z_log_var))

    def losses(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total, reconstruction, KL) of a batch, through a sampled latent point."""
        z_mean, z_log_var = self.encode(images)
        logits = self.decode_logits(self.reparameterize(z_mean, z_log_var))
        return vae_loss(logits, images, z_mean, z_log_var)

    # -- training ----------------------------------------------------------------------------
    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        total, reconstruction, kl = self.losses(images)
        # Validation and test use the same sampled loss (the negative ELBO estimate) as
        # training, so `val/loss` is comparable with `train/loss` and checkpoints on it.
        for name, value in (
            ("loss", total),
            ("reconstruction_loss", reconstruction),
            ("kl_loss", kl),
        ):
            self.log(
                f"{stage}/{name}",
                value,
                on_step=False,
                on_epoch=True,
                batch_size=images.shape[0],
                prog_bar=name == "loss" and stage != "train",
            )
        return total

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.optimizer_name](
            self.parameters(), lr=self.lr, weight_decay=self.weight_decay, **self.optimizer_args
        )

    def configure_callbacks(self) -> list[L.Callback]:
        if self.samples_every_n_epochs < 1:
            return []
        return [EpochSamples(every_n_epochs=self.samples_every_n_epochs)]

    # -- sampling ----------------------------------------------------------------------------
    def latent_grid_points(
        self, grid_size: int, grid: Literal["linear", "quantiles"], grid_scale: float
    ) -> torch.Tensor:
        """The (grid_size^2, latent_dim) points of the latent figure, row by row.

        ``linear``: the 2nd edition's evenly spaced grid over ``[-grid_scale, grid_scale]^2``
        with y decreasing down the rows; ``quantiles``: the 1st edition's normal quantiles
        of ``linspace(0.05, 0.95)``, so the figure covers the prior's mass evenly. With more
        than two latent dimensions the first two vary and the rest stay at 0.
        """
        if grid == "quantiles":
            levels = torch.linspace(0.05, 0.95, grid_size)
            values = torch.distributions.Normal(0.0, 1.0).icdf(levels)
        elif grid == "linear":
            values = torch.linspace(-grid_scale, grid_scale, grid_size)
        else:
            raise ConfigValueError(f"Unknown latent grid '{grid}'; use 'linear' or 'quantiles'.")
        ys, xs = torch.meshgrid(values.flip(0), values, indexing="ij")
        points = torch.zeros(grid_size * grid_size, self.latent_dim)
        points[:, 0] = xs.reshape(-1)
        points[:, 1] = ys.reshape(-1)
        return points

    @torch.no_grad()
    def generate(
        self,
        output_dir: Path,
        epoch: int | None = None,
        grid_size: int = 15,
        samples: int = 64,
        grid: Literal["linear", "quantiles"] = "linear",
        grid_scale: float = 1.0,
        seed: int = 0,
    ) -> list[Path]:
        """``latent_grid.png``: the book's figure, a ``grid_size`` x ``grid_size`` grid of
        images decoded from a grid over the latent plane (when latent_dim >= 2);
        ``samples.png``: ``samples`` images decoded from ``N(0, I)`` draws (seeded, so the
        figures of successive epochs show the same latent points)."""
        output_dir = Path(output_dir)
        was_training = self.training
        self.eval()
        files: list[Path] = []
        try:
            if self.latent_dim >= 2 and grid_size > 0:
                points = self.latent_grid_points(grid_size, grid, grid_scale).to(self.device)
                images = self.decode(points)
                files.append(
                    save_image_grid(images, output_dir / "latent_grid.png", columns=grid_size)
                )
            if samples > 0:
                generator = torch.Generator().manual_seed(seed)
                z = torch.randn(samples, self.latent_dim, generator=generator).to(self.device)
                files.append(save_image_grid(self.decode(z), output_dir / "samples.png"))
        finally:
            self.train(was_training)
        return files
