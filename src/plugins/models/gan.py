"""The deep convolutional GAN (book 1st ed. 8.5, 2nd ed. 12.5).

Generator: ``Dense -> reshape -> [Conv2DTranspose(f, 4, stride 2) -> LeakyReLU(0.2)]* ->
Conv2D(channels, 5) -> tanh`` (the 1st edition's; the real images are scaled to [-1, 1] to
match) or ``sigmoid`` (the 2nd edition's, images in [0, 1]). ``tanh`` is the default: on
the mostly black digits the sigmoid generator saturates and collapses within 3 epochs
(every latent point gives the same image, the discriminator wins), the tanh one does not.
Discriminator: ``[Conv2D(f, 4, stride 2) -> LeakyReLU(0.2)]* -> Flatten -> Dropout ->
Dense(1)``. Any image size works: the generator starts at ``ceil(size / 2^blocks)`` and its
output is cropped to the data's size.

The book's tricks are all here: LeakyReLU instead of ReLU, dropout in the discriminator,
latent points from the normal distribution, **noisy labels** (``label_noise * U(0, 1)``
added to every discriminator label; the book's 0.05), and the book's labelling (1 =
generated, 0 = real; the generator is trained with "all real" labels). The two networks
have their own optimizers and are trained in turn on every batch (manual optimization).

What is logged per epoch: ``train/d_loss`` and ``train/g_loss`` (both networks' losses),
the same two on validation batches (``val/d_loss``, ``val/g_loss``; no label noise, no
dropout), and ``val/loss``. GAN losses are adversarial and do not fall as the images get
better, so ``val/loss`` is instead a sample-quality distance that does: the **energy
distance** between generated and real validation images in pixel space (per-pixel RMS
units; 0 when the two sets are identical, and it grows when the generator collapses onto a
few images). Its generated images come from seeded latent points, the same every epoch,
so the default checkpoint on ``val/loss`` keeps the epoch whose images are closest to the
real ones. ``test/*`` are the same measures on the test images.
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
    ClipValue,
    ConfigValueError,
    DropoutRate,
    KernelSize,
    LabelNoise,
    LayerSize,
    LayerSizes,
    LeakySlope,
    LearningRate,
    Seed,
    Width,
)
from plugins.models.base import scaled
from plugins.models.generative import GENERATION, EpochSamples
from plugins.models.image_grid import save_image_grid
from plugins.models.initialisation import Init, initialise
from plugins.models.optimizers import OPTIMIZERS, check_optimizer
from plugins.models.vae import fit_to

#: the book's labels for the discriminator
GENERATED, REAL = 1.0, 0.0


def noisy_labels(labels: torch.Tensor, noise: float) -> torch.Tensor:
    """The book's trick: ``labels + noise * U(0, 1)`` (so 0 -> [0, noise), 1 -> [1, 1+noise))."""
    if noise <= 0:
        return labels
    return labels + noise * torch.rand_like(labels)


def energy_distance(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between two image batches, divided by the
    square root of the pixel count (so it reads in per-pixel RMS units). Never negative
    (the V-statistic), 0 for identical sets, larger as the distributions differ."""
    x = first.flatten(start_dim=1).float()
    y = second.flatten(start_dim=1).float()
    between = torch.cdist(x, y).mean()
    within = torch.cdist(x, x).mean() + torch.cdist(y, y).mean()
    return (2 * between - within).clamp_min(0) / math.sqrt(x.shape[1])


class DCGAN(L.LightningModule):
    """The book's DCGAN; ``generate`` draws a grid from a fixed, seeded latent batch.

    ``lr`` is the generator's learning rate, ``discriminator_lr`` the discriminator's
    (``null``: the same); ``clip_value`` clips every gradient value (the 1st edition's
    ``clipvalue=1.0``). ``samples`` latent points, drawn once from ``seed`` and kept in the
    checkpoint (a buffer), make the per-epoch grids comparable. ``num_classes`` is accepted
    and ignored (the GAN never sees labels).
    """

    #: samples are all it makes: stages that score predictions refuse it (see GENERATION)
    task: ClassVar[str] = GENERATION

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int | None = None,
        latent_dim: LayerSize = 128,
        generator_filters: LayerSizes = (128, 256, 512),
        discriminator_filters: LayerSizes = (64, 128, 128),
        kernel_size: KernelSize = 4,
        dropout: DropoutRate = 0.4,
        leaky_slope: LeakySlope = 0.2,
        label_noise: LabelNoise = 0.05,
        output_activation: Literal["sigmoid", "tanh"] = "tanh",
        width: Width = 1.0,
        optimizer: str = "adam",
        lr: LearningRate = 1e-4,
        discriminator_lr: LearningRate | None = None,
        clip_value: ClipValue | None = None,
        optimizer_args: dict[str, Any] | None = None,
        init: Init = "keras",
        samples: int = 64,
        seed: Seed = 0,
        samples_every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if len(input_shape) != 3:
            raise ConfigValueError(
                f"model=dcgan needs images (channels, height, width); the data gives shape "
                f"{tuple(input_shape)}. Use an image dataset (digits, mnist, cifar10, ...)."
            )
        self.optimizer_args = check_optimizer(optimizer, optimizer_args)
        if output_activation not in ("sigmoid", "tanh"):
            raise ConfigValueError(
                f"'model.output_activation' must be sigmoid or tanh, got '{output_activation}'."
            )
        if not generator_filters or not discriminator_filters:
            raise ConfigValueError(
                "'model.generator_filters' and 'model.discriminator_filters' need at least one "
                "layer each."
            )
        if latent_dim < 1:
            raise ConfigValueError(f"'model.latent_dim' must be at least 1, got {latent_dim}.")
        self.input_shape = tuple(int(size) for size in input_shape)
        self.latent_dim = latent_dim
        self.label_noise = label_noise
        self.output_activation = output_activation
        self.optimizer_name = optimizer
        self.lr = lr
        self.discriminator_lr = lr if discriminator_lr is None else discriminator_lr
        self.clip_value = clip_value
        self.seed = seed
        self.samples_every_n_epochs = samples_every_n_epochs
        channels, height, width_px = self.input_shape
        g_sizes = scaled(generator_filters, width)
        d_sizes = scaled(discriminator_filters, width)
        padding = (kernel_size - 1) // 2

        # generator: Dense -> (f0, h0, w0) -> upsampling blocks -> Conv2D(channels, 5)
        blocks = len(g_sizes)
        self.start_shape = (
            g_sizes[0],
            math.ceil(height / 2**blocks),
            math.ceil(width_px / 2**blocks),
        )
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, math.prod(self.start_shape)),
            nn.Unflatten(1, self.start_shape),
        ]
        previous = g_sizes[0]
        for size in g_sizes:
            # kernel 4, stride 2, padding 1 doubles the size exactly (Keras' "same")
            layers += [
                nn.ConvTranspose2d(previous, size, 4, stride=2, padding=1),
                nn.LeakyReLU(leaky_slope),
            ]
            previous = size
        layers.append(nn.Conv2d(previous, channels, 5, padding=2))
        self.generator = nn.Sequential(*layers)

        # discriminator: strided convolutions -> Flatten -> Dropout -> Dense(1) (a logit)
        layers = []
        previous = channels
        for size in d_sizes:
            layers += [
                nn.Conv2d(previous, size, kernel_size, stride=2, padding=padding),
                nn.LeakyReLU(leaky_slope),
            ]
            previous = size
        layers.append(nn.Flatten())
        features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = features(torch.zeros(1, *self.input_shape)).shape[1]
        if flat < 1:
            raise ConfigValueError(
                f"Images of {height}x{width_px} are too small for {len(d_sizes)} stride-2 "
                "convolutions in the discriminator; use fewer 'model.discriminator_filters'."
            )
        self.discriminator = nn.Sequential(features, nn.Dropout(dropout), nn.Linear(flat, 1))
        initialise(self, init)

        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("fixed_latent", torch.randn(samples, latent_dim, generator=generator))

    # -- the networks ------------------------------------------------------------------------
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Generated images (N, C, H, W) in [0, 1] for latent points ``z`` (N, latent_dim)."""
        return self.to_unit(self.generate_raw(z))

    def generate_raw(self, z: torch.Tensor) -> torch.Tensor:
        """The generator's output in its own range ([0, 1] sigmoid, [-1, 1] tanh)."""
        _, height, width = self.input_shape
        out = fit_to(self.generator(z), height, width)
        return torch.sigmoid(out) if self.output_activation == "sigmoid" else torch.tanh(out)

    def to_model_range(self, images: torch.Tensor) -> torch.Tensor:
        """Data images in [0, 1] -> the generator's range."""
        return images * 2 - 1 if self.output_activation == "tanh" else images

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """Generator-range images -> [0, 1]."""
        return (images + 1) / 2 if self.output_activation == "tanh" else images

    def random_latent(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent points from the normal distribution (the book's choice)."""
        z = torch.randn(count, self.latent_dim, generator=generator)
        return z.to(self.device)

    # -- training ----------------------------------------------------------------------------
    def discriminator_loss(
        self, fake: torch.Tensor, real: torch.Tensor, noise: float
    ) -> torch.Tensor:
        """Binary cross-entropy of the discriminator on generated (label 1) and real (label 0)
        images, its labels made noisy by ``noise * U(0, 1)``."""
        count_fake, count_real = fake.shape[0], real.shape[0]
        labels = torch.cat(
            [
                torch.full((count_fake, 1), GENERATED, device=real.device),
                torch.full((count_real, 1), REAL, device=real.device),
            ]
        )
        logits = self.discriminator(torch.cat([fake, real]))
        return F.binary_cross_entropy_with_logits(logits, noisy_labels(labels, noise))

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator wants its images called real: cross-entropy against "all real"."""
        misleading = torch.full((fake.shape[0], 1), REAL, device=fake.device)
        return F.binary_cross_entropy_with_logits(self.discriminator(fake), misleading)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        d_optimizer, g_optimizer = self.optimizers()
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        real = self.to_model_range(images)
        count = real.shape[0]

        # 1. the discriminator, on generated and real images (the generator is not updated)
        fake = self.generate_raw(self.random_latent(count)).detach()
        d_loss = self.discriminator_loss(fake, real, self.label_noise)
        d_optimizer.zero_grad()
        self.manual_backward(d_loss)
        self._clip(self.discriminator)
        d_optimizer.step()

        # 2. the generator, through the discriminator (only the generator's step is taken)
        g_loss = self.generator_loss(self.generate_raw(self.random_latent(count)))
        g_optimizer.zero_grad()
        self.manual_backward(g_loss)
        self._clip(self.generator)
        g_optimizer.step()

        self._log("train", {"d_loss": d_loss, "g_loss": g_loss}, count)

    def _clip(self, network: nn.Module) -> None:
        if self.clip_value:
            nn.utils.clip_grad_value_(network.parameters(), self.clip_value)

    def _evaluate(self, batch: Any, batch_idx: int, stage: str) -> None:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        count = images.shape[0]
        # seeded per batch: the same latent points every epoch, so epochs compare
        generator = torch.Generator().manual_seed(self.seed + 1 + batch_idx)
        fake = self.generate_raw(self.random_latent(count, generator))
        d_loss = self.discriminator_loss(fake, self.to_model_range(images), noise=0.0)
        g_loss = self.generator_loss(fake)
        distance = energy_distance(self.to_unit(fake), images)
        self._log(stage, {"d_loss": d_loss, "g_loss": g_loss, "loss": distance}, count)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def _log(self, stage: str, values: dict[str, torch.Tensor], count: int) -> None:
        for name, value in values.items():
            self.log(
                f"{stage}/{name}",
                value,
                on_step=False,
                on_epoch=True,
                batch_size=count,
                prog_bar=stage != "train" and name == "loss",
            )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Two optimizers, in the order ``training_step`` uses them: discriminator, generator."""
        factory = OPTIMIZERS[self.optimizer_name]
        return [
            factory(
                self.discriminator.parameters(), lr=self.discriminator_lr, **self.optimizer_args
            ),
            factory(self.generator.parameters(), lr=self.lr, **self.optimizer_args),
        ]

    def configure_callbacks(self) -> list[L.Callback]:
        if self.samples_every_n_epochs < 1:
            return []
        return [EpochSamples(every_n_epochs=self.samples_every_n_epochs)]

    # -- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, output_dir: Path, epoch: int | None = None, samples: int | None = None
    ) -> list[Path]:
        """``samples.png``: a grid of images generated from the fixed latent batch (the
        same points at every epoch and in every call). ``samples`` defaults to the batch's
        size (the model's ``samples``, 64); more than it holds are drawn from a second
        fixed seed."""
        latent = self.fixed_latent
        samples = len(latent) if samples is None else samples
        if samples < 1:
            return []
        if samples > len(latent):
            generator = torch.Generator().manual_seed(self.seed + 10_000)
            extra = torch.randn(samples - len(latent), self.latent_dim, generator=generator)
            latent = torch.cat([latent, extra.to(latent.device)])
        was_training = self.training
        self.eval()
        try:
            images = self(latent[:samples])
        finally:
            self.train(was_training)
        return [save_image_grid(images, Path(output_dir) / "samples.png")]
