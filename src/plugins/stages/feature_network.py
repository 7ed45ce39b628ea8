"""A convnet seen as a feature extractor over real images: what DeepDream and style transfer use.

Both work on *any* convnet: a torchvision classifier (pretrained weights when present), the
network of an earlier run (``runs:/<id>``), or the model this pipeline just trained. The
network is wrapped so that it takes RGB images in [0, 1] whatever it was trained on
(ImageNet normalisation for torchvision weights; grey conversion for a one-channel net),
and gives the activations of named layers, stopping the forward pass as soon as the last
one needed has run (so a classifier's fixed-size head never sees an odd-sized image).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipelines.api import PipelineError, did_you_mean

#: real photographs that ship with scikit-learn: the offline defaults for every image input
SAMPLE_IMAGES = ("china.jpg", "flower.jpg")
_GREY = (0.299, 0.587, 0.114)


class _StopForward(Exception):
    """Raised by a hook once every layer of interest has run: the rest is not needed."""


@dataclass
class FeatureNetwork:
    """``network`` in eval mode and the input adapter it needs; see the module docstring."""

    network: nn.Module
    #: where the network came from, for messages and run tags
    source: str
    imagenet_input: bool
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.network.eval().to(self.device)
        first_conv = require_convolutions(self.network, self.source)
        self.in_channels = 3 if self.imagenet_input else first_conv.in_channels
        self.modules = dict(self.network.named_modules())
        mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
        std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        self._mean, self._std = mean.to(self.device), std.to(self.device)
        self._grey = torch.tensor(_GREY, device=self.device).view(1, 3, 1, 1)

    def adapt(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 1] as this network's input."""
        if self.imagenet_input:
            return (images - self._mean) / self._std
        if self.in_channels == 1:
            return (images * self._grey).sum(dim=1, keepdim=True)
        return images

    def check_layers(self, names: Iterable[str], key: str) -> None:
        """Every name is a module of the network, or a clear error listing its conv layers."""
        check_layer_names(self.network, self.source, names, key)

    def conv_names(self) -> list[str]:
        return [name for name, m in self.modules.items() if isinstance(m, nn.Conv2d)]

    def activations(self, images: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs of the named modules for RGB ``images`` in [0, 1], in forward order.

        The graph is kept, so the result can be differentiated with respect to ``images``.
        """
        wanted = list(dict.fromkeys(names))
        captured: dict[str, torch.Tensor] = {}

        def hook(name: str) -> Any:
            def store(_module: nn.Module, _inputs: Any, output: Any) -> None:
                if name not in captured:  # a module reused in one pass keeps its first output
                    captured[name] = output
                if len(captured) == len(wanted):
                    raise _StopForward

            return store

        handles = [self.modules[name].register_forward_hook(hook(name)) for name in wanted]
        try:
            with suppress(_StopForward):
                self.network(self.adapt(images))
        except RuntimeError as exc:
            raise PipelineError(
                f"The network '{self.source}' failed on an image of {tuple(images.shape[2:])} "
                f"pixels: {str(exc).splitlines()[0]}. Use a larger image (height=...) or fewer "
                "octaves, or layers nearer the input."
            ) from None
        finally:
            for handle in handles:
                handle.remove()
        missing = [name for name in wanted if name not in captured]
        if missing:
            raise PipelineError(
                f"The layers {missing} of '{self.source}' did not run in a forward pass (an "
                "auxiliary head used only in training?); choose layers on the main path."
            )
        return captured

    def conv_groups(self, images: torch.Tensor) -> list[list[str]]:
        """Conv layers in forward order, grouped by output resolution (the network's blocks).

        Blocks end where the feature maps shrink (pooling or a strided conv), which is what
        the book's layer names (``block3_conv1``) encode for VGG; this finds them for any net.
        """
        order: list[tuple[str, tuple[int, ...]]] = []
        convs = self.conv_names()

        def hook(name: str) -> Any:
            def store(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
                order.append((name, tuple(output.shape[2:])))
                if name == convs[-1]:
                    raise _StopForward

            return store

        handles = [self.modules[name].register_forward_hook(hook(name)) for name in convs]
        try:
            with torch.no_grad(), suppress(_StopForward):
                self.network(self.adapt(images))
        finally:
            for handle in handles:
                handle.remove()
        groups: list[list[str]] = []
        previous: tuple[int, ...] | None = None
        for name, size in order:
            if size != previous:
                groups.append([])
                previous = size
            groups[-1].append(name)
        return groups


def require_convolutions(network: nn.Module, source: str) -> nn.Conv2d:
    """The network's first Conv2d layer, or a clear error: DeepDream and style transfer
    read feature maps of conv layers."""
    first_conv = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise PipelineError(
            f"The network '{source}' has no Conv2d layer, so it cannot be used for "
            "DeepDream or style transfer. Give a convnet: a torchvision model "
            "(backbone=vgg19, inception_v3, resnet50, ...), runs:/<id> of a convnet run, "
            "or train one in this pipeline (model=convnet)."
        )
    return first_conv


def check_layer_names(network: nn.Module, source: str, names: Iterable[str], key: str) -> None:
    """Every name is a module of ``network``, or a clear error listing its conv layers."""
    modules = dict(network.named_modules())
    for name in names:
        if name not in modules or not name:
            convs = [layer for layer, m in modules.items() if isinstance(m, nn.Conv2d)]
            shown = ", ".join(convs[:12]) + (", ..." if len(convs) > 12 else "")
            raise PipelineError(
                f"The network '{source}' has no layer '{name}' (in '{key}')."
                f"{did_you_mean(name, list(modules))} Name modules as "
                f"`named_modules()` does, e.g. its conv layers: {shown}."
            )


def check_pipeline_network(
    ctx: Any, backbone: str | None, layers: dict[str, Iterable[str]]
) -> None:
    """A stage's ``check`` right after ``prepare``: with ``backbone`` unset it works on the
    model this pipeline builds (and trains first), which must be a convnet with the
    ``layers`` named in the config (``{config key: names}``). Said at the end, a dense
    model or a misspelt layer cost the whole training."""
    if backbone is not None or ctx.model is None:
        return  # a torchvision or runs:/ network: checked when it is loaded
    source = _pipeline_model_source(ctx)
    require_convolutions(ctx.model, source)
    for key, names in layers.items():
        check_layer_names(ctx.model, source, names, key)


def _pipeline_model_source(ctx: Any) -> str:
    """How messages and tags name the model this pipeline built (``model convnet``)."""
    return f"model {ctx.config['model']['name']}"


def resolve_network(
    ctx: Any, backbone: str | None, weights: str | None, key: str, device: str = "auto"
) -> FeatureNetwork:
    """The network a stage works on: ``backbone`` if set, else the model this pipeline built."""
    from pipelines.api import is_run_reference, load_run_model
    from plugins.models.backbones import torchvision_network

    target = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    )
    if backbone is None:
        if ctx.model is None:
            raise PipelineError(
                f"No network for this stage: set '{key}' to a torchvision model (vgg19, "
                "inception_v3, resnet50, ...) or to runs:/<run_id> of a convnet run, or put "
                "'prepare' and 'fit' before it to use the model this pipeline trains."
            )
        return FeatureNetwork(ctx.model, _pipeline_model_source(ctx), False, target)
    if is_run_reference(backbone):
        ctx.tracker.set_tags({"pipelines.source_run": backbone})
        return FeatureNetwork(load_run_model(backbone, ctx.tracking_uri), backbone, False, target)
    network = torchvision_network(backbone, weights, key=key)
    return FeatureNetwork(network, backbone, True, target)


def load_image(path: str | None, default: str, height: int, key: str) -> torch.Tensor:
    """An image file (or one of scikit-learn's sample photos) as RGB (1, 3, H, W) in [0, 1].

    Resized to ``height`` rows, keeping the aspect ratio (the book's ``img_height``).
    """
    from PIL import Image, UnidentifiedImageError

    name = path or default
    if name in SAMPLE_IMAGES and not Path(name).is_file():
        from sklearn.datasets import load_sample_image

        picture = Image.fromarray(load_sample_image(name))
    else:
        file = Path(name).expanduser()
        if not file.is_file():
            raise PipelineError(
                f"The image {file} (from '{key}') does not exist. Give the path to a JPEG or "
                f"PNG file, or leave it unset for scikit-learn's sample photo '{default}'."
            )
        try:
            picture = Image.open(file)
            picture.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise PipelineError(
                f"The file {file} (from '{key}') is not an image Pillow can read ({exc})."
            ) from None
    picture = picture.convert("RGB")
    width = max(1, round(picture.width * height / picture.height))
    picture = picture.resize((width, height), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)
    return pixels.permute(2, 0, 1).unsqueeze(0).contiguous()


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (N, C, H, W) images to ``size`` (rows, columns)."""
    if tuple(images.shape[2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False)


def save_image(image: torch.Tensor, path: Path) -> Path:
    """One (1, 3, H, W) or (3, H, W) image in [0, 1] as a PNG."""
    from PIL import Image

    pixels = image.detach().float().cpu().reshape(-1, *image.shape[-2:]).clamp(0, 1)
    array = (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array if array.shape[2] == 3 else array[:, :, 0]).save(path)
    return path
