"""Transfer learning (book ch. 5): a pretrained base plus a new head for the target classes."""

from __future__ import annotations

from typing import Any

from torch import nn

from pipelines.api import DropoutRate, HiddenLayer, OptimizerArguments, Unpack
from plugins.models.backbones import build_backbone
from plugins.models.base import Classifier


class TransferClassifier(Classifier):
    """``base`` (pretrained, freezable block by block) -> ``head`` (new, trained from scratch).

    ``backbone`` is a torchvision model name with ``weights`` (a torchvision weights name,
    read from the torchvision cache or downloaded; a local ``.pth`` file; or null), or the
    network of an earlier run: ``runs:/<run_id>`` or ``models:/<name>/<version>``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        backbone: str | None = "resnet18",
        weights: str | None = "DEFAULT",
        hidden_units: HiddenLayer = 256,
        dropout: DropoutRate = 0.5,
        tracking_uri: str | None = None,
        **training: Unpack[OptimizerArguments],
    ) -> None:
        super().__init__(**training)
        self.save_hyperparameters(ignore=["tracking_uri"])
        base = build_backbone(backbone, weights, tracking_uri)
        self.base = base.features
        self.blocks = base.blocks
        width = base.feature_width(input_shape)
        head: list[nn.Module] = [nn.Flatten()]
        if hidden_units:
            head += [nn.Linear(width, hidden_units), nn.ReLU()]
            width = hidden_units
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*head)
        self.net = nn.Sequential(self.base, self.head)
        self.initialise(keep=[self.base])

    @classmethod
    def rebuild_arguments(cls, hparams: dict[str, Any], tracking_uri: str | None) -> dict:
        """Arguments to rebuild the architecture only: the checkpoint supplies all weights."""
        return {**hparams, "weights": None, "tracking_uri": tracking_uri}

    def freeze_base(self) -> None:
        """Feature extraction: only the head learns."""
        self.base.requires_grad_(False)
        self.train(self.training)

    def unfreeze_top(self, blocks: int) -> list[str]:
        """Fine-tuning: the top ``blocks`` of the base learn again; returns their names."""
        self.freeze_base()
        chosen = self.blocks[-blocks:] if blocks > 0 else []
        for name in chosen:
            self.base.get_submodule(name).requires_grad_(True)
        self.train(self.training)
        return chosen

    def train(self, mode: bool = True) -> TransferClassifier:
        """Batch-norm statistics stay frozen while any of the base is frozen (as in Keras)."""
        super().train(mode)
        if any(not p.requires_grad for p in self.base.parameters()):
            for module in self.base.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self
