"""Sequence models (text and timeseries): inputs, masking, recurrent dropout, regression, CLI."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import mlflow_runs, quiet_trainer, run_cli, store_uri
from pipelines import registry
from pipelines.errors import ConfigValueError
from plugins.models.sequence import packed_to_front

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
SEQUENCE_MODELS = ["embedding_dense", "simple_rnn", "lstm", "gru", "conv1d", "transformer"]
RECURRENT = ["simple_rnn", "lstm", "gru"]
VOCAB = 50


def build(name: str, shape: tuple[int, ...], vocab: int | None = None, **kwargs):
    context = {"input_shape": shape, "num_classes": 3}
    if vocab is not None:
        context["vocab_size"] = vocab
    # small sizes keep the tests fast; the architecture is the same
    defaults = {"embed_dim": 16, "dense_dim": 8} if name == "transformer" else {}
    if name in [*RECURRENT, "conv1d"]:
        defaults["embedding_dim"] = 8
    return registry.build("model", {"name": name, **defaults, **kwargs}, **context)


def token_batch(n: int = 4, steps: int = 10, seed: int = 0) -> torch.Tensor:
    """Right-padded token ids: row i has a different number of real tokens (>= 1)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, steps), generator=generator)
    lengths = torch.tensor([steps, 1, steps // 2, steps - 2])[:n]
    ids[torch.arange(steps)[None, :] >= lengths[:, None]] = 0
    return ids


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize(
    ("shape", "vocab", "batch"),
    [
        ((10,), VOCAB, lambda: token_batch()),
        ((10, 3), None, lambda: torch.randn(4, 10, 3)),
        ((1, 8, 8), None, lambda: torch.rand(4, 1, 8, 8)),
    ],
    ids=["tokens", "float-sequence", "image-rows"],
)
def test_logits_for_tokens_sequences_and_images(name, shape, vocab, batch) -> None:
    model = build(name, shape, vocab)
    model.train()
    model(batch()).sum().backward()
    model.eval()
    assert model(batch()).shape == (4, 3)


@pytest.mark.parametrize("shape", [(20,), (1, 8, 8)])
def test_bag_of_words_is_the_books_dense_model(shape: tuple[int, ...]) -> None:
    model = registry.build("model", {"name": "bow_dense"}, input_shape=shape, num_classes=2)
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [16, 2]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.net)
    assert model(torch.rand(3, *shape)).shape == (3, 2)
    with pytest.raises(ConfigValueError, match="bags of words"):
        model(torch.ones(3, *shape, dtype=torch.long))


@pytest.mark.parametrize("name", [*RECURRENT, "transformer", "embedding_dense"])
def test_appending_padding_does_not_change_the_output(name: str) -> None:
    extra = {"bidirectional": True, "num_layers": 2} if name in RECURRENT else {}
    torch.manual_seed(0)
    model = build(name, (15,), VOCAB, **extra).eval()
    ids = token_batch(steps=10)
    longer = torch.cat([ids, torch.zeros(4, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(longer), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", RECURRENT)
def test_left_padding_reads_like_right_padding(name: str) -> None:
    model = build(name, (10,), VOCAB, bidirectional=True).eval()
    right = token_batch(steps=10)
    left = torch.stack([torch.cat([row[row == 0], row[row != 0]]) for row in right])
    with torch.no_grad():
        torch.testing.assert_close(model(left), model(right))


@pytest.mark.parametrize("name", RECURRENT)
def test_bidirectional_doubles_the_state(name: str) -> None:
    one = build(name, (1, 8, 8), units=6)
    two = build(name, (1, 8, 8), units=6, bidirectional=True)
    assert one.net.head[-1].in_features == 6
    assert two.net.head[-1].in_features == 12
    assert two(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_stacked_layers_and_width() -> None:
    model = build("lstm", (10, 3), units=8, num_layers=3, dropout=0.2, width=2.0)
    assert model.net.rnn.num_layers == 3 and model.net.rnn.hidden_size == 16
    assert model.net.rnn.dropout == 0.2
    assert model(torch.randn(2, 10, 3)).shape == (2, 3)


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_dropout_only_in_training(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, (10, 3), recurrent_dropout=0.5)
    x = torch.randn(4, 10, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    first, second = model(x), model(x)
    assert not torch.allclose(first, second), "a new weight mask per forward pass in training"
    first.sum().backward()
    assert model.net.rnn.weight_hh_l0.grad.abs().sum() > 0, "gradients reach the real weights"
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed by the dropout"
    model.eval()
    with torch.no_grad():
        plain = build(name, (10, 3))
        plain.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(x), plain.eval()(x))
        torch.testing.assert_close(model(x), model(x))


def packed_reference(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """What the recurrent models computed before they stopped packing: the last layer's final
    state(s) of ``pack_padded_sequence`` over each row's tokens (recurrent dropout drawn in
    the same order, so the same seed gives the same masks)."""
    from torch.nn import functional as F
    from torch.nn.utils.rnn import pack_padded_sequence

    net = model.net
    sequence, mask = net.input(packed_to_front(ids))
    lengths = mask.sum(dim=1).clamp(min=1).cpu()
    packed = pack_padded_sequence(sequence, lengths, batch_first=True, enforce_sorted=False)
    weights = {
        name: F.dropout(getattr(net.rnn, name), net.recurrent_dropout, training=True)
        for name in net.recurrent_weights
        if net.training and net.recurrent_dropout > 0
    }
    _, state = torch.func.functional_call(net.rnn, weights, (packed,), strict=False)
    state = state[0] if isinstance(state, tuple) else state
    last = state[-net.directions :]
    return last.transpose(0, 1).reshape(last.shape[1], -1)


@pytest.mark.parametrize("name", RECURRENT)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-way", "bidirectional"])
def test_token_state_is_the_packed_final_state(name: str, bidirectional: bool) -> None:
    """Reading token ids without packing (so ``torch.export`` can trace the model) gives the
    packed result, values and gradients, for left-, right- and all-padding rows."""
    torch.manual_seed(0)
    model = build(name, (10,), VOCAB, bidirectional=bidirectional, num_layers=2)
    ids = token_batch(n=4, steps=10)
    ids = torch.cat([ids, torch.zeros(1, 10, dtype=torch.long), ids[1:2].roll(5)])
    for recurrent_dropout in (0.0, 0.5):
        model.net.recurrent_dropout = recurrent_dropout
        model.train()
        torch.manual_seed(1)
        expected = packed_reference(model, ids)
        (expected_grad,) = torch.autograd.grad(expected.square().sum(), model.net.rnn.weight_hh_l1)
        torch.manual_seed(1)
        sequence, mask = model.net.input(packed_to_front(ids))
        state = model.net.read_tokens(sequence, mask)
        (grad,) = torch.autograd.grad(state.square().sum(), model.net.rnn.weight_hh_l1)
        torch.testing.assert_close(state, expected)
        torch.testing.assert_close(grad, expected_grad)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.net.head(packed_reference(model, ids)), model(ids))


@pytest.mark.parametrize("name", RECURRENT)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["one-way", "bidirectional"])
def test_sequence_state_is_the_final_hidden_state(name: str, bidirectional: bool) -> None:
    """Images and series (no padding) are classified from the last layer's final state in
    each direction, read off the outputs (torch 2.11's export mis-shaped ``h_n``): the same
    values as ``h_n``."""
    torch.manual_seed(0)
    model = build(name, (6, 5), bidirectional=bidirectional, num_layers=2).eval()
    series = torch.rand(3, 6, 5)
    features = []
    model.net.head.register_forward_pre_hook(lambda _, args: features.append(args[0]))
    with torch.no_grad():
        model(series)
        _, state = model.net.rnn(model.net.input(series)[0])
    state = state[0] if isinstance(state, tuple) else state
    last = state[-model.net.directions :]  # (dirs, N, units): forward, then backward
    torch.testing.assert_close(features[0], last.transpose(0, 1).reshape(3, -1))


@pytest.mark.filterwarnings("ignore:The tensor attributes .*_flat_weights:UserWarning")
@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("lstm", {"bidirectional": True, "num_layers": 2}),
        ("gru", {"num_layers": 2}),
        ("simple_rnn", {"bidirectional": True}),
    ],
)
def test_token_models_export_with_any_batch_size(name: str, settings: dict) -> None:
    """``torch.export`` (what MLflow saves models with) traces a token model with a dynamic
    batch, and the exported program computes what the module does."""
    from torch.export import Dim

    torch.manual_seed(0)
    model = build(name, (10,), VOCAB, **settings).eval()
    exported = torch.export.export(model, (token_batch(n=2),), dynamic_shapes=({0: Dim.AUTO},))
    ids = torch.cat([token_batch(n=4, seed=1), torch.zeros(1, 10, dtype=torch.long)])
    ids[2] = ids[2].roll(3)  # padding on both sides
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(ids), model(ids))


def test_conv1d_never_pools_a_short_sequence_to_nothing() -> None:
    model = build("conv1d", (3, 5), filters=[4, 4, 4], pool_size=5, padding="valid")
    assert model(torch.randn(2, 3, 5)).shape == (2, 3)
    model = build("conv1d", (1, 8, 8), filters=[4, 4, 4], pool_size=5)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3)


def test_token_model_given_floats_says_so() -> None:
    model = build("lstm", (10,), VOCAB)
    with pytest.raises(ConfigValueError, match="token ids"):
        model(torch.rand(2, 10))
    with pytest.raises(ConfigValueError, match=r"multiple of 'model\.num_heads'"):
        build("transformer", (10,), VOCAB, embed_dim=15, num_heads=2)


@pytest.mark.parametrize("name", [*SEQUENCE_MODELS, "bow_dense"])
def test_every_config_file_is_accepted_by_its_model(name: str) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pipelines.config import config_dir

    # composed, as a run sees it: the shared training arguments come from its defaults list
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        node = OmegaConf.to_container(compose("config", overrides=[f"model={name}"]).model)
    assert node["name"] == name
    for implied in ("vocab_size", "input_shape", "num_classes", "task"):
        assert implied not in node, f"{implied} comes from the data"
    _, kwargs = registry.check("model", node, input_shape=(1, 8, 8), num_classes=10)
    assert set(node) - {"name"} <= set(kwargs)


def test_regression_outputs_one_value_and_logs_mae() -> None:
    torch.manual_seed(0)
    model = registry.build(
        "model",
        {"name": "gru", "units": 4},
        input_shape=(12, 2),
        num_classes=1,
        task="regression",
        target_scale=2.0,
    )
    x, y = torch.randn(16, 12, 2), torch.randn(16)
    assert model(x).shape == (16, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer = quiet_trainer(num_sanity_val_steps=0)
    trainer.fit(model, loader, loader)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/mae"} <= set(metrics)
    assert float(metrics["val/mae"]) > 0


def test_sequence_models_run_on_the_default_digits(workdir: Path) -> None:
    """``python -m pipelines.run model=<m> trainer.max_epochs=1 tracking=none`` for each model,
    as one sweep: one process instead of five start-ups (a failed job fails the command)."""
    models = ["lstm", "gru", "simple_rnn", "conv1d", "transformer"]
    result = run_cli(
        [
            "-m",
            f"model={','.join(models)}",
            "trainer.max_epochs=1",
            "tracking=none",
            "+trainer.limit_train_batches=4",
            "+trainer.limit_val_batches=2",
            "+trainer.limit_test_batches=2",
        ],
        cwd=workdir,
    )
    assert result.returncode == 0, result.output
    for model in models:
        assert f"pipelines: {model} on digits (classify) finished" in result.output


def test_lstm_on_text_is_logged_as_an_mlflow_model(workdir: Path) -> None:
    """``model=lstm data=text_classification``: the run's MLflow model loads back and predicts
    what the trained module predicts, and saving it printed nothing (no graph, no warning)."""
    import mlflow

    from pipelines.training.run_loader import load_run_model

    words = ["good", "great", "fine", "bad", "awful", "dull"]
    lines = [
        f"{words[i % 6]} film {words[(i * 7) % 6]} plot\t{int(i % 6 < 3)}\n" for i in range(40)
    ]
    (workdir / "reviews.tsv").write_text("".join(lines))
    result = run_cli(
        [
            "model=lstm",
            "data=text_classification",
            "data.path=reviews.tsv",
            "data.vectorize.sequence_length=8",
            "model.embedding_dim=8",
            "model.units=4",
            "trainer.max_epochs=1",
        ],
        cwd=workdir,
    )
    assert result.returncode == 0, result.output
    for noise in ("could not be logged", "def forward", "were assigned during export"):
        assert noise not in result.output, result.output
    uri = store_uri(workdir)
    (run,) = mlflow_runs(uri)
    assert "pipelines.log_model_error" not in run.data.tags
    assert "pipelines.log_network_error" not in run.data.tags
    mlflow.set_tracking_uri(uri)
    logged = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/network")
    trained = load_run_model(run.info.run_id, uri).eval()
    vocab = trained.hparams.vocab_size
    ids = torch.randint(1, vocab, (5, 8), generator=torch.Generator().manual_seed(0))
    ids[1, 3:] = 0  # right-padded
    ids[2, :6] = 0  # left-padded
    ids[3] = 0  # no known word
    with torch.no_grad():
        torch.testing.assert_close(logged(ids), trained(ids))


class _DataDependent(torch.nn.Module):
    """A forward that branches on its input's values: ``torch.export`` cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) if int(x.sum() > 0) else -self.linear(x)


@pytest.mark.parametrize("exportable", [True, False], ids=["image-lstm", "data-dependent"])
def test_saving_the_mlflow_model_is_quiet(
    exportable: bool,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Saving a model prints nothing: an LSTM (torch warns about its flat weights while
    exporting) is saved silently, a model torch cannot export costs one warning line (torch
    prints its partial graph to stderr otherwise) and a tag, and the run goes on."""
    from types import SimpleNamespace

    import mlflow
    from mlflow import MlflowClient

    from plugins.stages.report import log_mlflow_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(
        client.create_experiment("quiet", artifact_location=(tmp_path / "artifacts").as_uri())
    )
    tags: dict[str, str] = {}
    tracker = SimpleNamespace(uri=uri, run_id=run.info.run_id, set_tags=tags.update)
    model = build("lstm", (1, 8, 8), units=4) if exportable else _DataDependent()
    example = torch.rand(2, 1, 8, 8) if exportable else torch.rand(2, 3)
    capfd.readouterr()
    with caplog.at_level("WARNING"), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        log_mlflow_model(SimpleNamespace(tracker=tracker), model, example)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert [str(w.message) for w in shown if "export" in str(w.message)] == []
    lines = [r.getMessage() for r in caplog.records if r.name == "plugins.stages.report"]
    if exportable:
        assert lines == [] and tags == {}
        mlflow.set_tracking_uri(uri)
        logged = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/network")
        images = torch.rand(5, 1, 8, 8)
        with torch.no_grad():
            torch.testing.assert_close(logged(images), model.eval()(images))
    else:
        (line,) = lines
        assert "could not be logged" in line and "\n" not in line
        assert "data-dependent" in tags["pipelines.log_network_error"]
