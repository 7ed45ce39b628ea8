"""The generative acceptance numbers: char-LSTM vs the unigram baseline, VAE and DCGAN on MNIST.

Every run goes through the CLI as a user's would; what docs/benchmarks.md claims is then read back
from the MLflow store and checked (the script exits non-zero when a claim does not hold):

* char_lstm on the embedded corpus (Python's pydoc topics) and on the first 200,000
  characters of Nietzsche: validation bits per character below the unigram baseline's,
  and samples at the four temperatures in the run (``generate/`` and every epoch's);
* vae on real MNIST (the 10,000 real images in ../shared split 8,000 / 2,000, as
  ``real_mnist.py``): ``val/loss`` falls epoch over epoch, ``generate/latent_grid.png``;
* dcgan on the same images: a sample grid for every epoch, both networks' losses logged.

    python benchmarks/generative.py [--shared ../shared/data] [--only char|vae|dcgan]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

from cli import run
from real_mnist import make_split

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TEMPERATURES = ("0.2", "0.5", "1.0", "1.2")


def client_for(cwd: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")


def artifacts(client, run_id: str, folder: str) -> set[str]:
    return {item.path.removeprefix(f"{folder}/") for item in client.list_artifacts(run_id, folder)}


def history(client, run_id: str, metric: str) -> list[float]:
    return [
        m.value for m in sorted(client.get_metric_history(run_id, metric), key=lambda m: m.step)
    ]


def check(claim: str, holds: bool, failures: list[str]) -> None:
    print(f"    {'ok  ' if holds else 'FAIL'} {claim}", flush=True)
    if not holds:
        failures.append(claim)


def char_lstm(args: list[str], label: str, cwd: Path, failures: list[str]) -> None:
    result = run(args, cwd)
    bpc, unigram = result.metrics["best/val_bpc"], result.metrics["best/val_unigram_bpc"]
    print(f"  {label}: val/bpc {bpc:.3f} vs unigram {unigram:.3f} ({result.seconds:.0f} s)\n"
          f"    python -m pipelines.run {' '.join(args)}", flush=True)  # fmt: skip
    client = client_for(cwd)
    check("val/bpc below the unigram baseline", bpc < unigram, failures)
    wanted = {f"temperature-{t}.txt" for t in TEMPERATURES}
    check("samples at 0.2/0.5/1.0/1.2 in generate/",
          wanted <= artifacts(client, result.run_id, "generate"), failures)  # fmt: skip
    epochs = artifacts(client, result.run_id, "samples")
    check(f"samples after every epoch ({len(epochs)} epochs)", len(epochs) >= 1, failures)


def vae(data: list[str], cwd: Path, epochs: int, failures: list[str]) -> None:
    args = [*data, "experiment=book_vae_mnist", f"trainer.max_epochs={epochs}"]
    result = run(args, cwd)
    client = client_for(cwd)
    losses = history(client, result.run_id, "val/loss")
    by_epoch = ", ".join(f"{v:.1f}" for v in losses)
    print(f"  vae on real MNIST: val/loss by epoch {by_epoch} ({result.seconds:.0f} s)\n"
          f"    python -m pipelines.run {' '.join(args)}", flush=True)  # fmt: skip
    falls = len(losses) == epochs and all(b < a for a, b in itertools.pairwise(losses))
    check("val/loss falls epoch over epoch", falls, failures)
    check("generate/latent_grid.png in the run",
          "latent_grid.png" in artifacts(client, result.run_id, "generate"), failures)  # fmt: skip


def dcgan(data: list[str], cwd: Path, epochs: int, failures: list[str]) -> None:
    args = [*data, "pipeline=generative", "model=dcgan", "model.width=0.25",
            f"trainer.max_epochs={epochs}"]  # fmt: skip
    result = run(args, cwd)
    client = client_for(cwd)
    d_loss, g_loss = (history(client, result.run_id, f"train/{n}") for n in ("d_loss", "g_loss"))
    print(f"  dcgan on real MNIST ({result.seconds:.0f} s): train/d_loss "
          f"{', '.join(f'{v:.3f}' for v in d_loss)}; train/g_loss "
          f"{', '.join(f'{v:.3f}' for v in g_loss)}\n"
          f"    python -m pipelines.run {' '.join(args)}", flush=True)  # fmt: skip
    grids = {
        epoch: artifacts(client, result.run_id, f"samples/{epoch}")
        for epoch in (f"epoch-{n:03d}" for n in range(1, epochs + 1))
    }
    check("samples/epoch-NNN/samples.png for every epoch",
          all("samples.png" in files for files in grids.values()), failures)  # fmt: skip
    check("both losses logged every epoch", len(d_loss) == len(g_loss) == epochs, failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--only", choices=("char", "vae", "dcgan"))
    parser.add_argument("--epochs", type=int, default=5, help="VAE epochs (DCGAN: 3)")
    options = parser.parse_args()
    if not options.shared.is_dir():
        raise SystemExit(f"{options.shared} not found: it holds the real MNIST and Nietzsche.")
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tracked = ["tracking.experiment=benchmarks"]
        if options.only in (None, "char"):
            default = [*tracked, "pipeline=generative", "model=char_lstm", "data=text_corpus"]
            char_lstm(default, "char_lstm on pydoc topics (defaults)", work, failures)
            nietzsche = [*tracked, "experiment=book_char_lstm_nietzsche",
                         f"data.path={options.shared / 'nietzsche' / 'nietzsche.txt'}",
                         "data.max_chars=200000", "trainer.max_epochs=3"]  # fmt: skip
            char_lstm(nietzsche, "char_lstm on Nietzsche, first 200k chars", work, failures)
        if options.only in (None, "vae", "dcgan"):
            root = make_split(options.shared / "mnist", work / "mnist")
            data = [*tracked, "data=mnist", f"data.root={root}"]
            if options.only in (None, "vae"):
                vae(data, work, options.epochs, failures)
            if options.only in (None, "dcgan"):
                dcgan(data, work, 3, failures)
    if failures:
        raise SystemExit(f"{len(failures)} claim(s) did not hold: {'; '.join(failures)}")


if __name__ == "__main__":
    main()
