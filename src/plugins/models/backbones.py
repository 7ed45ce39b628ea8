"""Pretrained bases for transfer learning: torchvision networks or the network of a run.

A base maps images to a flat feature vector and names its ``blocks`` (bottom to top), the
units that fine-tuning unfreezes from the top (book ch. 5: "unfreeze the top layers").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipelines.api import ConfigValueError, PipelineError, is_run_reference, load_run_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    features: nn.Module
    #: qualified names (within ``features``) of the fine-tunable blocks, bottom to top
    blocks: list[str]
    #: what it was trained on, where that is one run's data: the shape of a sample and the
    #: reference (``runs:/<id>``), for a refusal naming both runs' inputs
    trained_on: tuple[tuple[int, ...], str] | None = None

    def feature_width(self, input_shape: tuple[int, ...]) -> int:
        """The width of the feature vector of an input of ``input_shape``: a dry forward
        pass, refused in one paragraph where the base cannot take that input (a
        forecasting run's network given images)."""
        was_training = self.features.training
        self.features.eval()
        try:
            with torch.no_grad():
                return int(self.features(torch.zeros(2, *input_shape)).flatten(1).shape[1])
        except RuntimeError as exc:
            if self.trained_on is None:
                raise
            shape, reference = self.trained_on
            raise ConfigValueError(
                f"The network of '{reference}' (model.backbone) was trained on samples of "
                f"shape {tuple(shape)}, and this run's data gives {tuple(input_shape)}: its "
                f"layers cannot take them (torch: {str(exc).strip().splitlines()[0]}). Use "
                "the run of a model trained on data like this run's, or a torchvision "
                "network (`model.backbone=resnet18`)."
            ) from None
        finally:
            self.features.train(was_training)


class ImageNetInput(nn.Module):
    """Grey images to three channels, then ImageNet normalisation, as the weights expect."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std


def build_backbone(
    name: str | None, weights: str | None, tracking_uri: str | None = None
) -> Backbone:
    """``name``: a torchvision model (``resnet18``, ``vgg16``, ...) or ``runs:/``/``models:/``."""
    if not name:
        raise PipelineError(
            "No base network is set in 'model.backbone'. Name one: a torchvision model "
            "(model.backbone=resnet18, vgg16, ...) or the network of an earlier run "
            "(model.backbone=runs:/<run_id> or models:/<name>/<version>)."
        )
    if is_run_reference(name):
        return run_backbone(name, tracking_uri)
    return torchvision_backbone(name, weights)


#: torchvision models whose published weights expect the input rescaled inside the network
_TRANSFORM_INPUT = ("inception_v3", "googlenet")


def torchvision_network(name: str, weights: str | None, key: str = "model.backbone") -> nn.Module:
    """A whole torchvision classifier, with its pretrained weights unless ``weights`` is null.

    Inception and GoogLeNet are built as torchvision builds them for their weights
    (``transform_input=True``: ImageNet-normalised input is mapped to the [-1, 1] scale the
    ported Google weights were trained on). ``key`` names the config key in messages.
    """
    from torchvision import models

    if name not in models.list_models():
        from pipelines.api import did_you_mean

        hint = did_you_mean(name, models.list_models())
        raise PipelineError(
            f"Unknown backbone '{name}' in '{key}'.{hint}"
            " Use a torchvision model name (resnet18, vgg16, mobilenet_v3_small, ...) or the "
            "network of an earlier run: runs:/<run_id> or models:/<name>/<version>."
        )
    pretrained = bool(weights) and str(weights).lower() not in ("none", "null", "scratch")
    extra = (
        {"transform_input": pretrained, "aux_logits": True, "init_weights": not pretrained}
        if name in _TRANSFORM_INPUT
        else {}
    )
    network = models.get_model(name, weights=None, **extra)
    if pretrained:
        # the weights' key beside the backbone's (model.weights, pipeline.stages.0.weights)
        weights_key = f"{key.rpartition('.')[0] or 'model'}.weights"
        null_means = "to train from scratch" if key == "model.backbone" else "for random weights"
        network.load_state_dict(_pretrained_state(name, str(weights), weights_key, null_means))
    return network


def torchvision_backbone(name: str, weights: str | None) -> Backbone:
    network = torchvision_network(name, weights)
    if isinstance(getattr(network, "fc", None), nn.Linear):  # resnet, regnet, googlenet, ...
        network.fc = nn.Identity()
        blocks = [n for n, m in network.named_children() if _has_parameters(m)]
        return Backbone(nn.Sequential(ImageNetInput(), network), [f"1.{b}" for b in blocks])
    if isinstance(getattr(network, "features", None), nn.Module):  # vgg, mobilenet, efficientnet
        blocks = [n for n, m in network.features.named_children() if _has_parameters(m)]
        # Global average pooling instead of the book's Flatten: any input size, fewer weights.
        features = nn.Sequential(
            ImageNetInput(), network.features, nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        return Backbone(features, [f"1.{b}" for b in blocks])
    raise PipelineError(
        f"Backbone '{name}' has neither an `fc` head nor a `features` trunk; pick a ResNet, VGG, "
        "MobileNet or EfficientNet style model."
    )


def _pretrained_state(
    name: str, weights: str, key: str = "model.weights", null_means: str = "to train from scratch"
) -> dict[str, torch.Tensor]:
    """Weights from a local file, or a torchvision weights name (cache first, then download).

    ``key`` is the config key the weights came from, ``null_means`` what setting it to null
    does there: both only for messages.
    """
    path = Path(weights).expanduser()
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin") or path.exists():
        if not path.is_file():
            raise PipelineError(
                f"The weights file {path} (from '{key}') does not exist. Give the path "
                "to a state_dict saved with torch.save, a torchvision weights name (DEFAULT, "
                f"IMAGENET1K_V1, ...), or null {null_means}."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    from torchvision import models

    try:
        enum = models.get_model_weights(name)[weights]
    except KeyError:
        known = ", ".join(["DEFAULT", *(w.name for w in models.get_model_weights(name))])
        raise PipelineError(
            f"Unknown weights '{weights}' for {name} in '{key}'. Known: {known}, a path "
            "to a .pth file, or null."
        ) from None
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    try:
        return torch.hub.load_state_dict_from_url(
            enum.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except OSError as exc:  # URLError, timeouts, refused connections
        raise PipelineError(
            f"The pretrained weights {name}/{enum.name} are not in the torchvision cache "
            f"({cache}) and could not be downloaded ({exc}). Download {enum.url} on a machine "
            f"with internet and copy it to {cache} (or set TORCH_HOME), pass a local file with "
            f"{key}=/path/to/weights.pth, or use {key}=null {null_means}."
        ) from None


def run_backbone(reference: str, tracking_uri: str | None) -> Backbone:
    """The network of an earlier run, minus its classification head."""
    model = load_run_model(reference, tracking_uri)
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Sequential):
        raise PipelineError(
            f"The model of '{reference}' does not expose its layers as `net` (nn.Sequential), "
            "so its head cannot be split off; use a run of a built-in model."
        )
    layers = list(net.children())
    while layers and not isinstance(layers[-1], nn.Linear):
        layers.pop()
    if not layers:
        raise PipelineError(f"The model of '{reference}' has no Linear head to replace.")
    layers.pop()  # the old head
    while layers and isinstance(layers[-1], nn.Dropout):
        layers.pop()
    features = nn.Sequential(*layers)
    blocks = [
        name
        for name, module in features.named_modules()
        if name and any(True for _ in module.parameters(recurse=False))
    ]
    shape = getattr(model, "hparams", {}).get("input_shape")
    trained_on = (tuple(int(n) for n in shape), reference) if shape else None
    return Backbone(features, blocks, trained_on)


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())
