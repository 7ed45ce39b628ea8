"""The ``visualize`` stage (book ch. 5, "visualizing what convnets learn").

Three kinds of PNG go into the run's artifacts (``visualize/`` by default):

* ``activations_img<i>_<layer>.png``: the first feature maps a conv layer produces for a
  test image, to see which parts of the input each channel responds to;
* ``filters_<layer>.png``: inputs found by gradient ascent that maximise a filter's mean
  response, i.e. the pattern the filter is tuned to;
* ``gradcam.png``: Grad-CAM heatmaps of the last conv layer for the predicted class, over
  the test images, to see where the model looked to decide.

Gradients are taken with :func:`torch.autograd.grad` with respect to inputs and feature maps
only, so the model's parameters never receive a ``.grad``; the model runs in eval mode and
every module's previous mode is restored afterwards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from pipelines.api import PipelineError, RunContext
from plugins.stages.requirements import model_name, refuse_generative_model

#: activations a conv layer is commonly followed by; the maps shown are taken after them
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid)


class Visualize:
    """Logs activation grids, filter patterns and Grad-CAM heatmaps of ``ctx.model``.

    ``layers`` conv layers, spread evenly from the first to the last, are shown for
    activations and filter patterns (the book shows one per block, early to late);
    ``images`` test images are used for activations and Grad-CAM.
    """

    def __init__(
        self,
        images: int = 3,
        layers: int = 4,
        channels: int = 8,
        filters: int = 8,
        filter_steps: int = 30,
        filter_step_size: float = 0.05,
        artifact_dir: str = "visualize",
    ) -> None:
        self.images = images
        self.layers = layers
        self.channels = channels
        self.filters = filters
        self.filter_steps = filter_steps
        self.filter_step_size = filter_step_size
        self.artifact_dir = artifact_dir

    def check(self, ctx: RunContext) -> None:
        """Right after ``prepare``: the model has Conv2d layers, and class scores for
        Grad-CAM. ``pipeline=classify_visualize`` with the default mlp trained, tested and
        reported before this stage, last, found nothing to show."""
        model = ctx.require("model", "visualize", "prepare")
        if not conv_layers(model):
            raise PipelineError(
                f"The 'visualize' stage needs a convolutional model: it shows what Conv2d "
                f"layers respond to, and model '{model_name(ctx)}' has none. Choose a model "
                f"with convolution layers (e.g. model=convnet), or drop 'visualize' from "
                f"pipeline.stages."
            )
        refuse_generative_model(
            ctx, "visualize", "a classifier's class scores (Grad-CAM shows where it looked)"
        )

    def run(self, ctx: RunContext) -> None:
        model = ctx.require("model", "visualize", "prepare")
        datamodule = ctx.require("datamodule", "visualize", "prepare")
        self.check(ctx)
        convs = conv_layers(model)
        device = next(model.parameters()).device
        images, labels = sample_test_images(datamodule, self.images)
        images = images.to(device)
        classes = list(getattr(datamodule, "classes", None) or [])
        shown = pick_evenly(convs, self.layers)
        out_dir = Path(ctx.output_dir) / self.artifact_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        generator = torch.Generator(device="cpu").manual_seed(ctx.seed)

        written: list[Path] = []
        with eval_mode(model):
            written += plot_activations(model, shown, images, self.channels, out_dir)
            for name, conv in shown:
                patterns = filter_patterns(
                    model,
                    conv,
                    tuple(images.shape[1:]),
                    min(self.filters, conv.out_channels),
                    self.filter_steps,
                    self.filter_step_size,
                    generator,
                )
                title = f"filter patterns of {name}"
                written.append(save_grid(patterns, title, out_dir, f"filters_{name}"))
            last_name, last_conv = convs[-1]
            heatmaps, predicted = grad_cam(model, last_conv, images)
            written.append(
                plot_grad_cam(images, heatmaps, predicted, labels, classes, last_name, out_dir)
            )
        for path in written:
            ctx.tracker.log_artifact(path, self.artifact_dir)
        ctx.artifacts["visualize"] = written  # type: ignore[assignment]


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The model's Conv2d layers in definition order (a proxy for depth)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def pick_evenly(items: list[Any], count: int) -> list[Any]:
    """``count`` items spread from the first to the last, so deep models show late layers too."""
    if count >= len(items):
        return list(items)
    if count <= 1:
        return items[:1]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def sample_test_images(datamodule: Any, count: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first ``count`` test images (N, C, H, W) and their labels, if known.

    In-memory datamodules keep ``splits["test"]``; others give their first test batch.
    """
    splits = getattr(datamodule, "splits", None)
    if splits and "test" in splits and len(splits["test"][0]) > 0:
        images, labels = splits["test"]
        return images[:count], labels[:count]
    batch = next(iter(datamodule.test_dataloader()))
    if isinstance(batch, (tuple, list)):
        labels = batch[1][:count] if len(batch) > 1 else None
        return batch[0][:count], labels
    return batch[:count], None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, fixed batch-norm statistics) with every module's mode restored.

    Restored per module, not with ``model.train(was_training)``: a model may keep part of
    itself in eval mode on purpose (a frozen pretrained base).
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for module, training in modes.items():
            module.training = training


def _following_activations(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """Each conv layer's activation module, when the next module defined is one."""
    modules = [m for _, m in model.named_modules()]
    return {
        m: modules[i + 1]
        for i, m in enumerate(modules[:-1])
        if isinstance(m, nn.Conv2d) and isinstance(modules[i + 1], _ACTIVATIONS)
    }


def capture_activations(
    model: nn.Module, layers: list[tuple[str, nn.Conv2d]], images: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Feature maps of ``layers`` for ``images`` (post-activation where one follows the conv).

    The activation is applied to a copy of the conv output rather than hooked, because an
    activation module may be shared by several layers and would then fire more than once.
    """
    activations = _following_activations(model)
    captured: dict[str, torch.Tensor] = {}

    def hook(name: str, conv: nn.Conv2d) -> Any:
        def store(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            maps = output.detach().clone()
            if conv in activations:
                maps = activations[conv](maps)
            captured[name] = maps.cpu()

        return store

    handles = [conv.register_forward_hook(hook(name, conv)) for name, conv in layers]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def plot_activations(
    model: nn.Module,
    layers: list[tuple[str, nn.Conv2d]],
    images: torch.Tensor,
    channels: int,
    out_dir: Path,
) -> list[Path]:
    """One grid of the first ``channels`` feature maps per (test image, layer)."""
    captured = capture_activations(model, layers, images)
    written = []
    for index in range(images.shape[0]):
        for name, _ in layers:
            maps = captured[name][index, :channels]
            written.append(
                save_grid(
                    maps.unsqueeze(1),
                    f"test image {index}: activations of {name}",
                    out_dir,
                    f"activations_img{index}_{name}",
                    cmap="viridis",
                    scale=min_max,
                )
            )
    return written


class _StopForward(Exception):
    """Raised by a hook once the layer of interest has run: the rest of the net is not needed."""


def filter_patterns(
    model: nn.Module,
    conv: nn.Conv2d,
    input_shape: tuple[int, ...],
    count: int,
    steps: int,
    step_size: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Inputs (count, C, H, W) that maximise the mean response of ``conv``'s first filters.

    All filters are optimised in one batch (sample ``i`` for filter ``i``); the gradient is
    normalised per sample so every step moves pixels by about ``step_size``, whatever the
    gradient's scale (the book's trick to keep gradient ascent stable).
    """
    device = next(model.parameters()).device
    noise = torch.rand((count, *input_shape), generator=generator)
    inputs = (0.4 + 0.2 * noise).to(device)
    output: dict[str, torch.Tensor] = {}

    def stop(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        output["maps"] = out
        raise _StopForward

    handle = conv.register_forward_hook(stop)
    try:
        for _ in range(steps):
            inputs.requires_grad_(True)
            with suppress(_StopForward):
                model(inputs)
            maps = output["maps"]
            index = torch.arange(count, device=device)
            loss = maps[index, index].mean(dim=(1, 2)).sum()
            (grad,) = torch.autograd.grad(loss, inputs)
            rms = grad.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-8)
            inputs = (inputs + step_size * grad / rms.view(-1, 1, 1, 1)).detach()
    finally:
        handle.remove()
    return inputs.cpu()


def grad_cam(
    model: nn.Module, conv: nn.Conv2d, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM heatmaps (N, H, W) in [0, 1] for the predicted classes, and those classes.

    Channel weights are the spatially averaged gradients of the class score with respect to
    the layer's feature maps; the heatmap is the ReLU of the weighted sum of the maps. The
    input requires grad so a graph exists even when the layer's weights are frozen.
    """
    captured: dict[str, torch.Tensor] = {}

    def store(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        captured["maps"] = output

    handle = conv.register_forward_hook(store)
    try:
        logits = model(images.detach().clone().requires_grad_(True))
    finally:
        handle.remove()
    predicted = logits.argmax(dim=1)
    score = logits.gather(1, predicted[:, None]).sum()
    maps = captured["maps"]
    (grads,) = torch.autograd.grad(score, maps)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * maps).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False)
    cam = cam[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-8)
    return (cam / peak.view(-1, 1, 1)).cpu(), predicted.cpu()


def to_display(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) tensor as something imshow draws: RGB for 3 channels, else channel 0."""
    image = image.detach().cpu().float()
    if image.shape[0] == 3:
        return image.permute(1, 2, 0).numpy()
    return image[0].numpy()


def normalise(image: torch.Tensor) -> torch.Tensor:
    """Standardise, then squeeze into [0, 1] around grey (the book's ``deprocess_image``).

    Per-image min-max would let one extreme pixel wash out the pattern.
    """
    image = (image - image.mean()) / image.std().clamp_min(1e-8)
    return (0.5 + 0.15 * image).clamp(0, 1)


def min_max(image: torch.Tensor) -> torch.Tensor:
    """Stretch to [0, 1]: feature maps are compared by where they fire, not by how much."""
    low, high = image.min(), image.max()
    return (image - low) / (high - low).clamp_min(1e-8)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def save_grid(
    tiles: torch.Tensor,
    title: str,
    out_dir: Path,
    stem: str,
    cmap: str = "gray",
    scale: Callable[[torch.Tensor], torch.Tensor] = normalise,
) -> Path:
    """Tiles (N, C, H, W) in a grid of up to 8 columns, each scaled to [0, 1], as a PNG."""
    count = tiles.shape[0]
    cols = min(count, 8)
    rows = math.ceil(count / cols)
    figure = Figure(figsize=(1.4 * cols, 1.4 * rows + 0.5))
    axes = figure.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < count:
            ax.imshow(to_display(scale(tiles[index])), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(str(index), fontsize=7)
    figure.suptitle(title, fontsize=9)
    path = out_dir / f"{_safe(stem)}.png"
    figure.savefig(path, dpi=80)
    return path


def plot_grad_cam(
    images: torch.Tensor,
    heatmaps: torch.Tensor,
    predicted: torch.Tensor,
    labels: torch.Tensor | None,
    classes: list[str],
    layer: str,
    out_dir: Path,
) -> Path:
    """Each test image with its heatmap overlaid, titled predicted / true class."""

    def class_name(index: int) -> str:
        return classes[index] if index < len(classes) else str(index)

    count = images.shape[0]
    figure = Figure(figsize=(2.2 * count, 2.6))
    axes = figure.subplots(1, count, squeeze=False)[0]
    jet = colormaps["jet"]
    for index, ax in enumerate(axes):
        ax.imshow(to_display(min_max(images[index].detach().cpu())), cmap="gray", vmin=0, vmax=1)
        ax.imshow(jet(heatmaps[index].numpy()), alpha=0.4)
        title = f"pred: {class_name(int(predicted[index]))}"
        if labels is not None:
            title += f"\ntrue: {class_name(int(labels[index]))}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    figure.suptitle(f"Grad-CAM of {layer}", fontsize=9)
    path = out_dir / "gradcam.png"
    figure.savefig(path, dpi=80)
    return path
