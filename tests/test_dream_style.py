"""DeepDream and neural style transfer on any convnet: layers, the algorithms, the CLI.

No pretrained weights can be downloaded here, so the networks are torchvision's with
random weights (``weights=null``) or one trained in the test: the algorithms are the same,
only the pictures are less pretty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import mlflow_runs, run_cli, store_uri
from pipelines.errors import PipelineError
from plugins.models.backbones import torchvision_network
from plugins.stages.deepdream import DeepDream, default_dream_layers, dream_loss
from plugins.stages.feature_network import FeatureNetwork, load_image
from plugins.stages.style_transfer import StyleTransfer, gram_matrix, total_variation

#: small and quick: random-weight VGG11 on 40-pixel-high images
DREAM = [
    "pipeline=deepdream",
    "pipeline.stages.0.backbone=vgg11",
    "pipeline.stages.0.weights=null",
    "pipeline.stages.0.layers=null",
    "pipeline.stages.0.height=40",
    "pipeline.stages.0.octaves=2",
    "pipeline.stages.0.iterations=4",
]


#: tiny networks run fastest on one thread (conftest's fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vgg19() -> FeatureNetwork:
    torch.manual_seed(0)
    return FeatureNetwork(torchvision_network("vgg19", None), "vgg19", imagenet_input=True)


def write_png(path: Path, seed: int, size: tuple[int, int] = (48, 64)) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# -- layers --------------------------------------------------------------------------------
def test_style_layers_default_to_the_books_on_vgg19(vgg19: FeatureNetwork) -> None:
    """block1_conv1..block5_conv1 for style and block5_conv2 for content, found by shape."""
    content, style = StyleTransfer()._layers(vgg19, torch.rand(1, 3, 64, 64), "stage")
    assert style == ["features.0", "features.5", "features.10", "features.19", "features.28"]
    assert content == "features.30"


def test_conv_groups_follow_the_blocks(vgg19: FeatureNetwork) -> None:
    groups = vgg19.conv_groups(torch.rand(1, 3, 64, 64))
    assert [len(group) for group in groups] == [2, 2, 4, 4, 4]
    # mid-level layers, deeper ones weighted more
    layers = default_dream_layers(vgg19, torch.rand(1, 3, 64, 64))
    assert layers == {"features.7": 1.0, "features.16": 1.5, "features.25": 2.0}


def test_an_unknown_layer_names_the_conv_layers(vgg19: FeatureNetwork) -> None:
    with pytest.raises(PipelineError, match=r"no layer 'features\.99'.*features\.0, features\.2"):
        vgg19.check_layers(["features.99"], "pipeline.stages.0.layers")


def test_activations_stop_before_the_fixed_size_head(vgg19: FeatureNetwork) -> None:
    """An image of any size works: the classifier head never runs."""
    maps = vgg19.activations(torch.rand(1, 3, 37, 53), ["features.0", "features.5"])
    assert list(maps) == ["features.0", "features.5"]
    assert maps["features.0"].shape == (1, 64, 37, 53)


def test_a_one_channel_network_sees_grey_images() -> None:
    net = FeatureNetwork(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), "grey", False)
    rgb = torch.rand(1, 3, 8, 8)
    grey = net.adapt(rgb)
    assert grey.shape == (1, 1, 8, 8)
    expected = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert torch.allclose(grey[:, 0], expected)


# -- the algorithms ------------------------------------------------------------------------------
def test_octaves_with_no_ascent_give_back_the_original() -> None:
    """The lost detail put back after each octave restores the full-size image exactly."""
    torch.manual_seed(0)
    net = FeatureNetwork(torchvision_network("vgg11", None), "vgg11", True)
    original = torch.rand(1, 3, 40, 56) * 0.8 + 0.1
    stage = DeepDream(backbone="vgg11", octaves=3, iterations=1, step=0.0)
    layers = default_dream_layers(net, original)
    dream = stage.dream(original, lambda image: dream_loss(net, image, layers))
    assert dream.shape == original.shape
    assert torch.allclose(dream, original, atol=1e-5)


def test_gram_matrix_and_total_variation() -> None:
    maps = torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]]]])  # (1, C=2, H=1, W=2)
    assert torch.allclose(gram_matrix(maps), torch.tensor([[5.0, 2.0], [2.0, 1.0]]) / 4)
    assert float(total_variation(torch.ones(1, 3, 5, 5))) == 0.0
    stripes = torch.zeros(1, 1, 2, 2)
    stripes[..., 1, :] = 1.0
    assert float(total_variation(stripes)) == 1.0


def test_images_load_from_files_and_scikit_learns_samples(tmp_path: Path) -> None:
    image = load_image(str(write_png(tmp_path / "a.png", 0, (30, 60))), "china.jpg", 20, "key")
    assert image.shape == (1, 3, 20, 40)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert load_image(None, "flower.jpg", 32, "key").shape == (1, 3, 32, 48)
    with pytest.raises(PipelineError, match=r"missing\.jpg \(from 'pipeline\.stages\.0\.image'\)"):
        load_image(str(tmp_path / "missing.jpg"), "china.jpg", 20, "pipeline.stages.0.image")


# -- end to end --------------------------------------------------------------------------------
def test_deepdream_pipeline_logs_the_dream(workdir: Path) -> None:
    image = write_png(workdir / "photo.png", 1)
    result = run_cli([*DREAM, f"pipeline.stages.0.image={image}"], workdir)
    assert result.returncode == 0, result.output
    assert "pipelines: deepdream finished" in result.stdout  # named after the pipeline
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.info.run_name.startswith("deepdream-")
    metrics = run.data.metrics
    # gradient ascent excited the chosen layers
    assert metrics["deepdream/loss_dream"] > metrics["deepdream/loss_original"]
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(workdir))
    files = {a.path for a in client.list_artifacts(run.info.run_id, "deepdream")}
    assert files == {"deepdream/original.png", "deepdream/dream.png"}
    (folder,) = {path.parent for path in workdir.glob("outputs/**/deepdream/dream.png")}
    original, dream = (np.asarray(Image.open(folder / f"{n}.png")) for n in ("original", "dream"))
    assert original.shape == dream.shape == (40, 53, 3)
    assert np.abs(original.astype(int) - dream.astype(int)).mean() > 1.0


def test_style_transfer_pipeline_lowers_the_style_loss(workdir: Path) -> None:
    """With the style term alone, the optimised image's Gram matrices move to the style's."""
    content = write_png(workdir / "content.png", 2)
    stripes = np.zeros((30, 30, 3), dtype=np.uint8)
    stripes[::4, :, 0] = 255
    stripes[:, ::3, 2] = 200
    style = workdir / "style.png"
    Image.fromarray(stripes).save(style)
    result = run_cli(
        [
            "pipeline=style_transfer",
            "pipeline.stages.0.backbone=vgg11",
            "pipeline.stages.0.weights=null",
            f"pipeline.stages.0.content_image={content}",
            f"pipeline.stages.0.style_image={style}",
            "pipeline.stages.0.height=40",
            "pipeline.stages.0.iterations=20",
            "pipeline.stages.0.save_every=10",
            "pipeline.stages.0.content_weight=0",
            "pipeline.stages.0.total_variation_weight=0",
        ],
        workdir,
    )
    assert result.returncode == 0, result.output
    (run,) = mlflow_runs(store_uri(workdir))
    metrics = run.data.metrics
    assert (
        metrics["style_transfer/style_loss_end"] < 0.5 * metrics["style_transfer/style_loss_start"]
    )
    assert metrics["style_transfer/loss_end"] < metrics["style_transfer/loss_start"]
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(workdir))
    files = {a.path for a in client.list_artifacts(run.info.run_id, "style_transfer")}
    assert files == {
        f"style_transfer/{name}.png"
        for name in ("content", "style", "iteration-0010", "iteration-0020", "result")
    }
    history = client.get_metric_history(run.info.run_id, "style_transfer/loss")
    assert [m.step for m in history] == [0, 10, 20]


def test_deepdream_on_the_network_this_pipeline_trains(workdir: Path) -> None:
    """After prepare/fit, an unset backbone means the model just trained (a digits convnet)."""
    stages = (
        "pipeline.stages=[prepare,fit,{name:deepdream,layers:null,height:24,octaves:2,"
        "iterations:3}]"
    )
    result = run_cli(["model=convnet", "trainer.max_epochs=1", stages], workdir)
    assert result.returncode == 0, result.output
    assert "convnet on digits" in result.stdout
    (run,) = mlflow_runs(store_uri(workdir))
    assert run.data.tags["deepdream.layers"].startswith("net.")
    assert run.data.metrics["deepdream/loss_dream"] > run.data.metrics["deepdream/loss_original"]


def test_bad_backbone_and_layer_are_named(workdir: Path) -> None:
    result = run_cli([*DREAM[:1], "pipeline.stages.0.backbone=vgg_11"], workdir)
    assert result.returncode != 0
    assert "Unknown backbone 'vgg_11' in 'pipeline.stages.0.backbone'" in result.stderr
    assert "Did you mean 'vgg11'?" in result.stderr
    result = run_cli([*DREAM, "pipeline.stages.0.layers={features.99:1.0}"], workdir)
    assert result.returncode != 0
    assert "no layer 'features.99' (in 'pipeline.stages.0.layers')" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_weights_name_the_stage_key_not_the_model_key(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as error:
        torchvision_network("resnet18", str(tmp_path / "no.pth"), key="pipeline.stages.0.backbone")
    message = str(error.value)
    assert "'pipeline.stages.0.weights'" in message and "null for random weights" in message
    assert "model.weights" not in message and "train from scratch" not in message
