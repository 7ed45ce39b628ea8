"""The book's VAE and DCGAN: shapes for any image size, the losses, sampling, training, CLI."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from conftest import mlflow_runs, run_cli, store_uri
from plugins.models.gan import DCGAN, energy_distance, noisy_labels
from plugins.models.generative import Generative
from plugins.models.image_grid import image_grid, save_image_grid
from plugins.models.vae import VAE, kl_divergence, vae_loss

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
#: small networks keep the GAN tests fast; the architecture is the same at any width
SMALL_GAN = {"width": 0.125, "latent_dim": 16, "samples": 9, "samples_every_n_epochs": 0}


#: tiny networks run fastest on one thread (conftest's fixture)
pytestmark = pytest.mark.usefixtures("one_thread")


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


# -- shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_vae_reconstructs_at_the_input_shape(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = VAE(shape, num_classes=10, samples_every_n_epochs=0)
    images = torch.rand(3, *shape)
    reconstruction = model(images)
    assert reconstruction.shape == images.shape
    reconstruction = reconstruction.detach()
    assert float(reconstruction.min()) >= 0.0 and float(reconstruction.max()) <= 1.0
    z_mean, z_log_var = model.encode(images)
    assert z_mean.shape == z_log_var.shape == (3, 2)
    assert model.decode(torch.zeros(5, 2)).shape == (5, *shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_dcgan_generates_at_the_input_shape(shape: tuple[int, int, int], activation: str) -> None:
    torch.manual_seed(0)
    model = DCGAN(shape, num_classes=10, output_activation=activation, **SMALL_GAN)
    with torch.no_grad():
        images = model(torch.randn(4, 16))
    assert images.shape == (4, *shape)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0, "grids want [0, 1]"
    assert model.discriminator(model.generate_raw(torch.randn(4, 16))).shape == (4, 1)


def test_image_data_that_is_not_an_image_is_refused() -> None:
    from pipelines.errors import ConfigValueError

    with pytest.raises(ConfigValueError, match="images"):
        VAE((64,))
    with pytest.raises(ConfigValueError, match="images"):
        DCGAN((64,))


# -- the VAE's loss ----------------------------------------------------------------------------
def test_vae_loss_is_reconstruction_plus_kl_by_hand() -> None:
    torch.manual_seed(1)
    images = torch.rand(2, 1, 2, 2)
    logits = torch.randn(2, 1, 2, 2)
    z_mean, z_log_var = torch.randn(2, 3), torch.randn(2, 3)
    total, reconstruction, kl = vae_loss(logits, images, z_mean, z_log_var)

    probs = torch.sigmoid(logits)
    by_hand_reconstruction = 0.0
    by_hand_kl = 0.0
    for n in range(2):
        for value, p in zip(images[n].flatten().tolist(), probs[n].flatten().tolist(), strict=True):
            by_hand_reconstruction -= value * np.log(p) + (1 - value) * np.log(1 - p)
        for mu, log_var in zip(z_mean[n].tolist(), z_log_var[n].tolist(), strict=True):
            by_hand_kl += -0.5 * (1 + log_var - mu**2 - np.exp(log_var))
    by_hand_reconstruction /= 2  # mean over the batch
    by_hand_kl /= 2 * 3  # the book's mean over the batch and the 3 latent axes
    assert float(reconstruction) == pytest.approx(by_hand_reconstruction, rel=1e-5)
    assert float(kl) == pytest.approx(by_hand_kl, rel=1e-5)
    assert float(total) == pytest.approx(by_hand_reconstruction + by_hand_kl, rel=1e-5)


def test_kl_is_zero_for_the_prior_and_positive_elsewhere() -> None:
    zeros = torch.zeros(4, 2)
    assert torch.equal(kl_divergence(zeros, zeros), torch.zeros(4))
    assert bool((kl_divergence(torch.ones(4, 2), zeros) > 0).all())
    assert bool((kl_divergence(zeros, torch.full((4, 2), -1.0)) > 0).all())


def test_reparameterisation_lets_gradients_reach_the_encoder() -> None:
    z_mean = torch.zeros(3, 2, requires_grad=True)
    z_log_var = torch.zeros(3, 2, requires_grad=True)
    VAE.reparameterize(z_mean, z_log_var).pow(2).sum().backward()
    assert z_mean.grad is not None and float(z_mean.grad.abs().sum()) > 0
    assert z_log_var.grad is not None and float(z_log_var.grad.abs().sum()) > 0

    torch.manual_seed(0)
    model = VAE((1, 8, 8), samples_every_n_epochs=0)
    model.losses(torch.rand(4, 1, 8, 8))[0].backward()
    for layer in (model.encoder[0][0], model.z_log_var):  # first convolution, log-variance
        assert float(layer.weight.grad.abs().sum()) > 0


def test_vae_generate_writes_the_latent_grid_and_samples(tmp_path: Path) -> None:
    model = VAE((1, 8, 8), samples_every_n_epochs=0)
    assert isinstance(model, Generative)
    files = model.generate(tmp_path, epoch=3, grid_size=5, samples=6)
    assert [path.name for path in files] == ["latent_grid.png", "samples.png"]
    assert read_png(files[0]).shape == (5 * 8, 5 * 8)
    assert read_png(files[1]).shape == (2 * 8, 3 * 8)  # 6 samples: 3 columns, 2 rows
    quantiles = model.generate(tmp_path / "q", grid="quantiles", grid_size=3, samples=0)
    assert [path.name for path in quantiles] == ["latent_grid.png"]
    points = model.latent_grid_points(3, "linear", 1.0)
    assert points[0].tolist() == [-1.0, 1.0] and points[-1].tolist() == [1.0, -1.0]
    # a latent space of one dimension has no plane to draw: samples only
    one = VAE((3, 32, 32), latent_dim=1, samples_every_n_epochs=0)
    only = one.generate(tmp_path / "one", samples=4)
    assert [path.name for path in only] == ["samples.png"]
    assert read_png(only[0]).shape == (64, 64, 3)


# -- the DCGAN ---------------------------------------------------------------------------------
def test_noisy_labels_are_the_books() -> None:
    torch.manual_seed(0)
    labels = torch.cat([torch.ones(500, 1), torch.zeros(500, 1)])
    noisy = noisy_labels(labels, 0.05)
    assert float(noisy[:500].min()) >= 1.0 and float(noisy[:500].max()) <= 1.05
    assert float(noisy[500:].min()) >= 0.0 and float(noisy[500:].max()) <= 0.05
    assert float((noisy - labels).std()) > 0.01, "noise, not an offset"
    assert torch.equal(noisy_labels(labels, 0.0), labels)


def tiny_loaders(shape: tuple[int, int, int], count: int = 8) -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(count, *shape, generator=generator), torch.zeros(count))
    return DataLoader(data, batch_size=4), DataLoader(data, batch_size=4)


def tiny_trainer(**kwargs) -> L.Trainer:
    warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec).*")
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_one_training_step_updates_both_networks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DCGAN((1, 8, 8), **SMALL_GAN)
    assert model.automatic_optimization is False
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train, val = tiny_loaders((1, 8, 8))
    trainer = tiny_trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, default_root_dir=tmp_path
    )
    trainer.fit(model, train, val)
    assert trainer.global_step == 2, "one step of each optimizer"
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert any(name.startswith("generator.") for name in changed)
    assert any(name.startswith("discriminator.") for name in changed)
    assert {"train/d_loss", "train/g_loss", "val/loss", "val/d_loss"} <= set(
        trainer.callback_metrics
    )
    assert float(trainer.callback_metrics["val/loss"]) >= 0.0

    # rebuilt from the checkpoint's hyper-parameters, as run_loader does (weights_only)
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    checkpoint = torch.load(tmp_path / "gan.ckpt", map_location="cpu", weights_only=True)
    rebuilt = DCGAN(**checkpoint["hyper_parameters"])
    rebuilt.load_state_dict(checkpoint["state_dict"])
    model.eval()
    rebuilt.eval()
    assert torch.equal(rebuilt(model.fixed_latent), model(model.fixed_latent))


def test_vae_trains_and_rebuilds_from_its_hyper_parameters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VAE((1, 8, 8), latent_dim=3, width=0.5, samples_every_n_epochs=0)
    train, val = tiny_loaders((1, 8, 8))
    trainer = tiny_trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(model, train, val)
    metrics = trainer.callback_metrics
    for name in ("train/loss", "train/reconstruction_loss", "train/kl_loss", "val/loss"):
        assert name in metrics
    trainer.save_checkpoint(tmp_path / "vae.ckpt")
    checkpoint = torch.load(tmp_path / "vae.ckpt", map_location="cpu", weights_only=True)
    rebuilt = VAE(**checkpoint["hyper_parameters"])
    rebuilt.load_state_dict(checkpoint["state_dict"])
    z = torch.randn(4, 3)
    assert torch.equal(rebuilt.decode(z), model.decode(z))


def test_fixed_latent_gives_the_same_images_every_call(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DCGAN((3, 32, 32), **SMALL_GAN)
    model.train()
    first = model.generate(tmp_path / "a")
    second = model.generate(tmp_path / "b", epoch=2)
    assert [path.name for path in first] == ["samples.png"]
    assert np.array_equal(read_png(first[0]), read_png(second[0]))
    assert read_png(first[0]).shape == (3 * 32, 3 * 32, 3)  # 9 samples: 3 x 3
    assert model.training, "generate leaves the mode as it found it"
    torch.manual_seed(123)  # the buffer comes from the model's seed, not the global one
    assert torch.equal(DCGAN((3, 32, 32), **SMALL_GAN).fixed_latent, model.fixed_latent)
    more = model.generate(tmp_path / "c", samples=16)
    assert read_png(more[0]).shape == (4 * 32, 4 * 32, 3)


def test_energy_distance_is_zero_for_the_same_images_only() -> None:
    torch.manual_seed(0)
    images = torch.rand(16, 1, 8, 8)
    assert float(energy_distance(images, images)) == pytest.approx(0.0, abs=1e-5)
    assert float(energy_distance(images, torch.full_like(images, 0.5))) > 0.1


def test_image_grid_tiles_row_by_row(tmp_path: Path) -> None:
    images = torch.zeros(5, 3, 2, 3)
    images[4] = 1.0
    grid = image_grid(images, columns=2, padding=1, pad_value=0.5)
    assert grid.shape == (3 * 2 + 2, 2 * 3 + 1, 3) and grid.dtype == np.uint8
    assert (grid[6:8, 0:3] == 255).all(), "the fifth image starts the third row"
    assert (grid[2, :] == 128).all(), "padding between rows"
    path = save_image_grid(torch.rand(4, 1, 5, 5), tmp_path / "deep" / "grid.png")
    assert read_png(path).shape == (10, 10)


# -- end to end ----------------------------------------------------------------------------------
def artifact_files(client, run_id: str, folder: str) -> list[str]:
    return [item.path for item in client.list_artifacts(run_id, folder)]


@pytest.mark.parametrize(
    ("model", "extra", "per_epoch"),
    [
        ("vae", [], ["val/loss", "train/loss", "train/kl_loss", "train/reconstruction_loss"]),
        # a narrower GAN: the wiring is what is tested, and the book's widths take minutes
        ("dcgan", ["model.width=0.25"], ["train/d_loss", "train/g_loss", "val/loss"]),
    ],
)
def test_generative_pipeline_end_to_end(
    workdir: Path, model: str, extra: list[str], per_epoch: list[str]
) -> None:
    from mlflow import MlflowClient

    result = run_cli(
        ["pipeline=generative", f"model={model}", "trainer.max_epochs=2", *extra],
        workdir,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.output
    uri = store_uri(workdir)
    (run,) = mlflow_runs(uri)
    assert run.info.status == "FINISHED"
    client = MlflowClient(tracking_uri=uri)
    run_id = run.info.run_id
    for epoch in ("epoch-001", "epoch-002"):
        files = artifact_files(client, run_id, f"samples/{epoch}")
        assert f"samples/{epoch}/samples.png" in files
        if model == "vae":
            assert f"samples/{epoch}/latent_grid.png" in files
    generated = artifact_files(client, run_id, "generate")
    assert "generate/samples.png" in generated
    if model == "vae":
        assert "generate/latent_grid.png" in generated
    for name in per_epoch:
        assert len(client.get_metric_history(run_id, name)) == 2, name
    assert any(item.path.endswith(".ckpt") for item in client.list_artifacts(run_id, "checkpoints"))
