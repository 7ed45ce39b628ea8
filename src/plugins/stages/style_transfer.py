"""The ``style_transfer`` stage: neural style transfer (book 1st ed. ch. 8.3, 2nd ed. ch. 12.3).

An image is optimised so that a deep layer's activations match the content image's (content
loss), the Gram matrices of several layers match the style image's (style loss: textures,
colours, brush strokes at every scale), while a total-variation term keeps it smooth. The
book uses VGG19 (content ``block5_conv2``, style ``block1_conv1``..``block5_conv1``); unset,
the same layers are found for any convnet as the first conv of each block (and the second
conv of the last block for content), so on VGG19 the defaults are exactly the book's.

Losses are scale-free versions of the book's: means instead of sums and Gram matrices
divided by the number of activations, so the default weights hold across image sizes and
networks; the optimiser is Adam on the pixels, kept in [0, 1].
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.nn import functional as F

from pipelines.api import LearningRate, PipelineError, RunContext
from plugins.stages.feature_network import (
    FeatureNetwork,
    check_pipeline_network,
    load_image,
    resize,
    resolve_network,
    save_image,
)

log = logging.getLogger(__name__)


class StyleTransfer:
    """Paints ``content_image`` in the style of ``style_image``; PNGs and losses go to the run.

    Intermediate results are saved every ``save_every`` iterations (the book saves every
    100), the losses logged every ``log_every``.
    """

    uses_configured_model = False

    def __init__(
        self,
        backbone: str | None = None,
        weights: str | None = "DEFAULT",
        content_image: str | None = None,
        style_image: str | None = None,
        height: int = 256,
        content_layer: str | None = None,
        style_layers: list[str] | None = None,
        content_weight: float = 1.0,
        style_weight: float = 1e6,
        total_variation_weight: float = 1.0,
        iterations: int = 200,
        lr: LearningRate = 0.02,
        log_every: int = 10,
        save_every: int = 50,
        device: str = "auto",
        artifact_dir: str = "style_transfer",
    ) -> None:
        if iterations < 1 or height < 8 or lr <= 0:
            raise PipelineError(
                f"style_transfer needs iterations >= 1, height >= 8 and lr > 0; got "
                f"iterations={iterations}, height={height}, lr={lr}."
            )
        self.backbone = backbone
        self.weights = weights
        self.content_image = content_image
        self.style_image = style_image
        self.height = height
        self.content_layer = content_layer
        self.style_layers = style_layers
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.total_variation_weight = total_variation_weight
        self.iterations = iterations
        self.lr = lr
        self.log_every = max(1, log_every)
        self.save_every = save_every
        self.device = device
        self.artifact_dir = artifact_dir

    def check(self, ctx: RunContext) -> None:
        """Right after ``prepare`` (``backbone`` unset: the style transfer is on the model
        this pipeline trains): that model is a convnet with the configured layers."""
        key = ctx.stage_key
        layers = {
            f"{key}.content_layer": [self.content_layer] if self.content_layer else [],
            f"{key}.style_layers": list(self.style_layers or []),
        }
        check_pipeline_network(ctx, self.backbone, layers)

    def run(self, ctx: RunContext) -> None:
        key = ctx.stage_key
        net = resolve_network(ctx, self.backbone, self.weights, f"{key}.backbone", self.device)
        content = load_image(self.content_image, "china.jpg", self.height, f"{key}.content_image")
        style = load_image(self.style_image, "flower.jpg", self.height, f"{key}.style_image")
        # the book resizes the style image to the content image's size
        content, style = content.to(net.device), resize(style, content.shape[2:]).to(net.device)
        content_layer, style_layers = self._layers(net, content, key)
        log.info(
            "style transfer on %s: content %s, style %s", net.source, content_layer, style_layers
        )
        loss = StyleLoss(net, content, style, content_layer, style_layers, self.weights_tuple)

        out = Path(ctx.output_dir) / self.artifact_dir
        written = [save_image(content, out / "content.png"), save_image(style, out / "style.png")]
        image = content.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([image], lr=self.lr)
        start = end = {}
        for iteration in range(self.iterations + 1):
            parts = loss(image)
            values = {name: float(value.detach()) for name, value in parts.items()}
            if iteration == 0:
                start = values
            end = values
            if iteration % self.log_every == 0 or iteration == self.iterations:
                metrics = {f"style_transfer/{name}": value for name, value in values.items()}
                ctx.tracker.log_metrics(metrics, step=iteration)
            if iteration and self.save_every > 0 and iteration % self.save_every == 0:
                written.append(save_image(image, out / f"iteration-{iteration:04d}.png"))
            if iteration == self.iterations:
                break
            (grad,) = torch.autograd.grad(parts["loss"], image)
            image.grad = grad
            optimizer.step()
            with torch.no_grad():
                image.clamp_(0, 1)
        written.append(save_image(image, out / "result.png"))
        for path in written:
            ctx.tracker.log_artifact(path, self.artifact_dir)
        ctx.tracker.set_tags(
            {"style_transfer.layers": f"content {content_layer}; style {', '.join(style_layers)}"}
        )
        summary = {
            "style_transfer/loss_start": start["loss"],
            "style_transfer/loss_end": end["loss"],
            "style_transfer/style_loss_start": start["style_loss"],
            "style_transfer/style_loss_end": end["style_loss"],
        }
        ctx.metrics.update(summary)
        ctx.tracker.log_metrics(summary)

    @property
    def weights_tuple(self) -> tuple[float, float, float]:
        return self.content_weight, self.style_weight, self.total_variation_weight

    def _layers(self, net: FeatureNetwork, image: torch.Tensor, key: str) -> tuple[str, list[str]]:
        content_layer, style_layers = self.content_layer, self.style_layers
        if content_layer is None or not style_layers:
            groups = net.conv_groups(image)
            if content_layer is None:
                last = groups[-1]
                content_layer = last[1] if len(last) > 1 else last[0]
            if not style_layers:
                style_layers = [group[0] for group in groups[:5]]
        net.check_layers([content_layer], f"{key}.content_layer")
        net.check_layers(style_layers, f"{key}.style_layers")
        return content_layer, list(style_layers)


def gram_matrix(maps: torch.Tensor) -> torch.Tensor:
    """Channel-by-channel correlations of (1, C, H, W) maps, divided by C * H * W."""
    _, channels, height, width = maps.shape
    flat = maps.reshape(channels, height * width)
    return flat @ flat.T / (channels * height * width)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels: low for smooth images."""
    down = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    right = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    return down + right


class StyleLoss:
    """Content, style and total-variation losses of an image, targets computed once."""

    def __init__(
        self,
        net: FeatureNetwork,
        content: torch.Tensor,
        style: torch.Tensor,
        content_layer: str,
        style_layers: list[str],
        weights: tuple[float, float, float],
    ) -> None:
        self.net = net
        self.content_layer = content_layer
        self.style_layers = style_layers
        self.layers = [content_layer, *style_layers]
        self.content_weight, self.style_weight, self.tv_weight = weights
        with torch.no_grad():
            self.content_target = net.activations(content, [content_layer])[content_layer]
            maps = net.activations(style, style_layers)
            self.style_targets = {name: gram_matrix(maps[name]) for name in style_layers}

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.net.activations(image, self.layers)
        content = F.mse_loss(maps[self.content_layer], self.content_target)
        style = sum(
            F.mse_loss(gram_matrix(maps[name]), self.style_targets[name])
            for name in self.style_layers
        ) / len(self.style_layers)
        variation = total_variation(image)
        loss = (
            self.content_weight * content + self.style_weight * style + self.tv_weight * variation
        )
        return {"loss": loss, "content_loss": content, "style_loss": style, "tv_loss": variation}
