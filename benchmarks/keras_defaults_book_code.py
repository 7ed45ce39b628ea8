"""The book's ch. 2 Keras code (Dense(512, relu) -> Dense(10, softmax), rmsprop,
sparse_categorical_crossentropy, 5 epochs, batch 128) on keras_defaults.py's split.
Needs the [bench] extra (Keras 3, JAX).

    KERAS_BACKEND=jax python benchmarks/keras_defaults_book_code.py --seeds 0 1 2 3 4 [--holdout]
"""

import argparse
import gzip
import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras
import numpy as np
from keras import layers

MNIST = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


def read_idx(path):
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic, count = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    if magic == 2051:
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, 28, 28)
    return np.frombuffer(data, np.uint8, offset=8).reshape(count)


parser = argparse.ArgumentParser()
parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
parser.add_argument("--holdout", action="store_true", help="drop the same 10% as keras_defaults.py")
args = parser.parse_args()
images = read_idx(f"{MNIST}/t10k-images-idx3-ubyte.gz").reshape(10000, 784).astype("float32") / 255
labels = read_idx(f"{MNIST}/t10k-labels-idx1-ubyte.gz").astype("int64")
x_train, y_train, x_test, y_test = images[:7500], labels[:7500], images[7500:], labels[7500:]
for seed in args.seeds:
    xtr, ytr = x_train, y_train
    if args.holdout:
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(7500), test_size=0.1, random_state=seed,
                                   stratify=y_train)  # fmt: skip
        keep = np.sort(keep)
        xtr, ytr = xtr[keep], ytr[keep]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([layers.Dense(512, activation="relu"),
                              layers.Dense(10, activation="softmax")])  # fmt: skip
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    model.fit(xtr, ytr, epochs=5, batch_size=128, verbose=0)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    variant = "keras_book_code" + ("_holdout" if args.holdout else "")
    result = {"model": "dense", "variant": variant, "seed": seed, "n_train": len(ytr)}
    print(json.dumps({**result, "test_acc": round(float(acc), 4)}), flush=True)
