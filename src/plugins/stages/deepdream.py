"""The ``deepdream`` stage (book 1st ed. ch. 8.2, 2nd ed. ch. 12.2).

Gradient ascent on an image to excite chosen layers of a convnet, at several scales
("octaves"), re-injecting the detail that down-scaling lost after each octave. The book
dreams with InceptionV3 (layers ``mixed4``..``mixed7``, torchvision's ``Mixed_6b``..
``Mixed_6e``); here any convnet works: see :mod:`plugins.stages.feature_network`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from pipelines.api import PipelineError, RunContext
from plugins.stages.feature_network import (
    FeatureNetwork,
    check_pipeline_network,
    load_image,
    resize,
    resolve_network,
    save_image,
)

log = logging.getLogger(__name__)


class DeepDream:
    """Dream on ``image`` with ``backbone``'s ``layers``; PNGs and losses go into the run.

    ``layers`` maps module names to loss weights (``{Mixed_6b: 1.0, Mixed_6c: 1.5}``);
    unset, the last conv layer of each middle block of the network is used, deeper ones
    weighted more (the book's choice of mid-level layers, for any network). ``step`` is the
    size of one ascent step in pixel units (the gradient is normalised by its mean absolute
    value, as in the book); ``max_loss`` stops an octave early once the loss passes it.
    """

    uses_configured_model = False

    def __init__(
        self,
        backbone: str | None = None,
        weights: str | None = "DEFAULT",
        layers: dict[str, float] | None = None,
        image: str | None = None,
        height: int = 320,
        octaves: int = 3,
        octave_scale: float = 1.4,
        iterations: int = 20,
        step: float = 0.01,
        max_loss: float | None = None,
        device: str = "auto",
        artifact_dir: str = "deepdream",
    ) -> None:
        if octaves < 1 or iterations < 1 or height < 8 or octave_scale <= 1.0:
            raise PipelineError(
                "deepdream needs octaves >= 1, iterations >= 1, height >= 8 and "
                f"octave_scale > 1; got octaves={octaves}, iterations={iterations}, "
                f"height={height}, octave_scale={octave_scale}."
            )
        self.backbone = backbone
        self.weights = weights
        self.layers = layers
        self.image = image
        self.height = height
        self.octaves = octaves
        self.octave_scale = octave_scale
        self.iterations = iterations
        self.step = step
        self.max_loss = max_loss
        self.device = device
        self.artifact_dir = artifact_dir

    def check(self, ctx: RunContext) -> None:
        """Right after ``prepare`` (``backbone`` unset: the dream is on the model this
        pipeline trains): that model is a convnet with the configured ``layers``."""
        layers = {f"{ctx.stage_key}.layers": list(self.layers or {})}
        check_pipeline_network(ctx, self.backbone, layers)

    def run(self, ctx: RunContext) -> None:
        key = ctx.stage_key
        net = resolve_network(ctx, self.backbone, self.weights, f"{key}.backbone", self.device)
        original = load_image(self.image, "china.jpg", self.height, f"{key}.image").to(net.device)
        layers = self.layers or default_dream_layers(net, original)
        net.check_layers(layers, f"{key}.layers")
        log.info("deepdream on %s, layers %s", net.source, layers)

        def loss_of(image: torch.Tensor) -> torch.Tensor:
            return dream_loss(net, image, layers)

        with torch.no_grad():
            start = float(loss_of(original))
        dream = self.dream(original, loss_of, ctx.tracker.log_metrics)
        with torch.no_grad():
            end = float(loss_of(dream))
        out = Path(ctx.output_dir) / self.artifact_dir
        for path in (
            save_image(original, out / "original.png"),
            save_image(dream, out / "dream.png"),
        ):
            ctx.tracker.log_artifact(path, self.artifact_dir)
        ctx.tracker.set_tags({"deepdream.layers": ", ".join(f"{k}:{v}" for k, v in layers.items())})
        metrics = {"deepdream/loss_original": start, "deepdream/loss_dream": end}
        ctx.metrics.update(metrics)
        ctx.tracker.log_metrics(metrics)

    def dream(
        self,
        original: torch.Tensor,
        loss_of: Callable[[torch.Tensor], torch.Tensor],
        log_metrics: Callable[..., None] | None = None,
    ) -> torch.Tensor:
        """The book's octave loop: ascend at each scale, then put back the lost detail."""
        height, width = original.shape[2:]
        shapes = [
            (
                max(1, round(height / self.octave_scale**i)),
                max(1, round(width / self.octave_scale**i)),
            )
            for i in reversed(range(self.octaves))
        ]
        shrunk = resize(original, shapes[0])
        image = original
        for octave, shape in enumerate(shapes):
            image = resize(image, shape)
            image, loss = self.ascend(image, loss_of)
            log.info("octave %d %s: loss %.4f", octave, shape, loss)
            if log_metrics is not None:
                log_metrics({"deepdream/octave_loss": loss}, step=octave)
            same_size = resize(original, shape)
            image = image + same_size - resize(shrunk, shape)
            shrunk = same_size
        # clipped only at the end, as the book's deprocessing does: clipping between
        # octaves would make the detail put back differ from the detail lost
        return image.detach().clamp(0, 1)

    def ascend(
        self, image: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, float]:
        """``iterations`` normalised gradient-ascent steps; the image and its last loss."""
        loss_value = float("nan")
        image = image.detach()
        for _ in range(self.iterations):
            image.requires_grad_(True)
            loss = loss_of(image)
            (grad,) = torch.autograd.grad(loss, image)
            loss_value = float(loss.detach())
            if self.max_loss is not None and loss_value > self.max_loss:
                break
            grad = grad / grad.abs().mean().clamp_min(1e-7)
            image = (image + self.step * grad).detach()
        return image.detach(), loss_value


def dream_loss(net: FeatureNetwork, image: torch.Tensor, layers: dict[str, float]) -> torch.Tensor:
    """Weighted mean squared activation of ``layers``, borders excluded (as the book does)."""
    activations = net.activations(image, layers)
    total = image.new_zeros(())
    for name, weight in layers.items():
        maps = activations[name]
        if maps.shape[-1] > 4 and maps.shape[-2] > 4:
            maps = maps[..., 2:-2, 2:-2]
        total = total + weight * maps.pow(2).mean()
    return total


def default_dream_layers(net: FeatureNetwork, image: torch.Tensor) -> dict[str, float]:
    """The last conv of each middle block, weighted 1.0, 1.5, 2.0, ... from shallow to deep."""
    groups = net.conv_groups(image)
    middle = groups[1:-1] if len(groups) >= 3 else groups[-1:]
    return {group[-1]: 1.0 + 0.5 * index for index, group in enumerate(middle)}
