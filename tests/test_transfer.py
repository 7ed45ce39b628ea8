"""Transfer learning: weight sources (local file, torchvision cache, earlier runs), freezing,
and the feature-extraction -> fine-tuning pipeline end to end."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from conftest import mlflow_runs, run_cli, store_uri
from pipelines.errors import PipelineError
from pipelines.training.run_loader import load_run_model
from plugins.models.transfer import TransferClassifier

BACKBONE = "mobilenet_v3_small"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real state_dict for the backbone, made here (no download)."""
    from torchvision import models

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / f"{BACKBONE}.pth"
    torch.save(models.get_model(BACKBONE, weights=None).state_dict(), path)
    return path


def _model(weights: str | None, **kwargs) -> TransferClassifier:
    return TransferClassifier(
        input_shape=(3, 32, 32), num_classes=4, backbone=BACKBONE, weights=weights, **kwargs
    )


def test_local_weights_file_is_loaded(weights_file: Path) -> None:
    model = _model(str(weights_file))
    expected = torch.load(weights_file, weights_only=True)
    first = next(iter(expected))
    loaded = model.base[1].state_dict()[first.removeprefix("features.")]
    assert torch.equal(loaded, expected[first])
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 4), "grey images are widened to RGB"


def test_freeze_then_unfreeze_top_blocks(weights_file: Path) -> None:
    model = _model(str(weights_file))
    model.freeze_base()
    assert not any(p.requires_grad for p in model.base.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    batchnorms = [m for m in model.base.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batchnorms and not any(m.training for m in batchnorms), "frozen BN statistics"
    unfrozen = model.unfreeze_top(2)
    assert unfrozen == model.blocks[-2:]
    trainable = {n for n, p in model.base.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(tuple(unfrozen)) for n in trainable)
    optimizer = model.configure_optimizers()
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_params == len(trainable) + len(list(model.head.parameters()))


def test_torchvision_cache_is_used_without_download(
    weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision import models

    url = models.get_model_weights(BACKBONE)["DEFAULT"].url
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / Path(url).name).write_bytes(weights_file.read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    assert _model("DEFAULT").blocks


def test_missing_weights_offline_give_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PipelineError) as err:
        _model("IMAGENET1K_V1")
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "model.weights=null" in message


def test_missing_local_weights_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="does not exist"):
        _model(str(tmp_path / "nope.pth"))


def test_unknown_backbone_suggests() -> None:
    with pytest.raises(PipelineError, match="Did you mean 'resnet18'"):
        TransferClassifier(input_shape=(3, 8, 8), num_classes=2, backbone="resnet81")


def test_transfer_from_an_earlier_run_end_to_end(workdir: Path) -> None:
    source = run_cli(["model=convnet", "trainer.max_epochs=2"], cwd=workdir)
    assert source.returncode == 0, source.output
    uri = store_uri(workdir)
    (source_run,) = mlflow_runs(uri)
    reference = f"runs:/{source_run.info.run_id}"

    result = run_cli(
        ["pipeline=transfer", "model=transfer", f"model.backbone={reference}",
         "trainer.max_epochs=2", "pipeline.stages.3.unfreeze_blocks=1"],
        cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    run = mlflow_runs(uri)[-1]
    metrics = run.data.metrics
    for name in ("feature_extraction/val/acc", "fine_tuning/val/acc",
                 "feature_extraction/test/acc", "test/acc"):  # fmt: skip
        assert name in metrics, name
    client = MlflowClient(uri)
    assert len(client.get_metric_history(run.info.run_id, "fine_tuning/val/loss")) == 2
    assert run.data.tags["fine_tuning.unfrozen_blocks"]
    assert run.data.params["model.backbone"] == reference

    # the same network through the model registry
    client.create_registered_model("digits-convnet")
    client.create_model_version(
        "digits-convnet", f"{reference}/checkpoints", run_id=source_run.info.run_id
    )
    registered = load_run_model("models:/digits-convnet/1", tracking_uri=uri)
    direct = load_run_model(reference, tracking_uri=uri)
    assert all(
        torch.equal(a, b)
        for a, b in zip(registered.state_dict().values(), direct.state_dict().values(), strict=True)
    )


def test_unknown_run_reference_is_a_clear_error(workdir: Path) -> None:
    result = run_cli(
        ["pipeline=transfer", "model=transfer", "model.backbone=runs:/0123abc"], cwd=workdir
    )
    assert result.returncode == 2
    assert "No run '0123abc'" in result.stderr and "Traceback" not in result.output


def test_fine_tuning_needs_a_transfer_model(workdir: Path) -> None:
    result = run_cli(["pipeline=transfer", "trainer.max_epochs=1"], cwd=workdir)
    assert result.returncode == 2
    assert "model=transfer" in result.stderr
