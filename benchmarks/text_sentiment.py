"""Real labelled sentences: our text models against a scikit-learn bag-of-words baseline.

The 3,000 UCI "Sentiment Labelled Sentences" in ``../shared/data/sentiment`` (Amazon, Yelp
and IMDB, 1,000 each; see its SOURCES.md) are joined into one TSV file. Every model runs
through the CLI as a user's would, on the same seeded train/val/test split that the
baseline -- logistic regression on binary bag-of-words features, C chosen on the
validation split -- is fitted and scored on. Our models get the same treatment: where a model
lists several settings, each is trained and the one with the best validation accuracy (of
the checkpoint kept, ``best/val_acc``) is scored on test; the test split picks nothing.

    python benchmarks/text_sentiment.py [--sentiment ../shared/data/sentiment] [--seeds 1 2 3]

Prints one line per run and the mean per model; docs/benchmarks.md's table is copied from it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cli import run

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sentiment"
FILES = ("amazon_cells_labelled.txt", "yelp_labelled.txt", "imdb_labelled.txt")
#: each model's candidate settings; with several, validation accuracy chooses per seed
MODELS: dict[str, list[list[str]]] = {
    # the book's three bags (ch. 11): words, words + bigrams, TF-IDF-weighted bigrams
    "bow_dense": [
        ["model=bow_dense", "trainer.max_epochs=20"],
        ["model=bow_dense", "trainer.max_epochs=20", "vectorize=bigrams"],
        ["model=bow_dense", "trainer.max_epochs=20", "vectorize=tf_idf"],
    ],
    "lstm": [["model=lstm", "trainer.max_epochs=10"]],
    "gru": [["model=gru", "trainer.max_epochs=10"]],
    "conv1d": [["model=conv1d", "trainer.max_epochs=10"]],
    "transformer": [["model=transformer", "trainer.max_epochs=10"]],
}


def join_files(folder: Path, dest: Path) -> Path:
    """The three files as one, byte for byte (each line is ``sentence<TAB>label``)."""
    parts = [(folder / name).read_bytes() for name in FILES]
    dest.write_bytes(b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts))
    return dest


def baseline(path: Path, seed: int) -> float:
    """Test accuracy of logistic regression on binary unigram+bigram bags, C tuned on val."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from plugins.data.text import TextClassificationDataModule

    data = TextClassificationDataModule(path=str(path), seed=seed, cache_dir=None)
    parts = data.split(data.load_texts())
    vectorizer = CountVectorizer(binary=True, ngram_range=(1, 2))
    train = vectorizer.fit_transform(parts["train"][0])
    val, test = (vectorizer.transform(parts[name][0]) for name in ("val", "test"))
    best = max(
        (LogisticRegression(C=c, max_iter=2000).fit(train, parts["train"][1]) for c in
         (0.1, 0.3, 1.0, 3.0, 10.0)),
        key=lambda model: model.score(val, parts["val"][1]),
    )  # fmt: skip
    return float(best.score(test, parts["test"][1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentiment", type=Path, default=SHARED)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    options = parser.parse_args()
    if not options.sentiment.is_dir():
        raise SystemExit(f"{options.sentiment} not found: it holds the real labelled sentences.")
    results: dict[str, list[float]] = {"logistic regression": []}
    results.update({name: [] for name in options.models})
    with tempfile.TemporaryDirectory() as tmp:
        path = join_files(options.sentiment, Path(tmp) / "sentences.tsv")
        data = [
            "data=text_classification", f"data.path={path}", "data.vectorize.sequence_length=40",
            f"data.cache_dir={tmp}/cache", "tracking.experiment=benchmarks",
        ]  # fmt: skip
        print(f"python -m pipelines.run {' '.join(data[:3])} model=M seed=S", flush=True)
        for seed in options.seeds:
            score = baseline(path, seed)
            results["logistic regression"].append(score)
            print(f"  seed {seed} logistic regression  test/acc {score:.4f}", flush=True)
            for name in options.models:
                chosen: dict[str, float] = {}
                for settings in MODELS[name]:
                    result = run([*data, *settings, f"seed={seed}"], Path(tmp))
                    metrics = result.metrics
                    print(f"  seed {seed} {name:20s} val/acc {metrics['best/val_acc']:.4f} "
                          f"test/acc {metrics['test/acc']:.4f} ({result.seconds:.0f} s)  "
                          f"[{' '.join(settings)}]", flush=True)  # fmt: skip
                    if not chosen or metrics["best/val_acc"] > chosen["best/val_acc"]:
                        chosen = metrics
                results[name].append(chosen["test/acc"])
    for name, values in results.items():
        print(f"{name:20s} mean test/acc {sum(values) / len(values):.4f} "
              f"({', '.join(f'{v:.4f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
