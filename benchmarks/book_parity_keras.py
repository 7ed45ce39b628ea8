"""The book's own Keras 3 code for each row of ``book_parity.py``: prints one JSON line.

Each function is the chapter's listing as the book prints it (Keras defaults: ``"rmsprop"``
is RMSprop(1e-3, rho 0.9, epsilon 1e-7), Glorot-uniform kernels, zero biases), reading the
files ``book_parity.py`` prepared, so that both sides see the same rows and splits:

    KERAS_BACKEND=jax python benchmarks/book_parity_keras.py ROW --seed N --data PATH \
        [--budget '{"epochs": 5}']

``--data`` is the row's prepared folder (or file), ``--budget`` the shared epoch budget
(JSON; the book's own when not given). Output: ``{"row", "seed", "metrics": {name: value},
"seconds", "keras", "backend"}`` with the metric names of the pipeline's summary
(``test/acc``, ``test/mae``, ...). Needs Keras 3 and JAX (the ``bench`` extra); no
TensorFlow: where the book uses ``TextVectorization`` or ``timeseries_dataset_from_array``
(tf.data), the same arithmetic is written out in numpy below.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np
from keras import layers

# -- reading the prepared files ------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic, count = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    if magic == 2051:
        rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (8, 12))
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8).reshape(count)


def mnist(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, test_images, test_labels): uint8 images, int64 labels."""
    arrays = [
        read_idx(folder / f"{part}-{kind}-idx{dims}-ubyte.gz")
        for part in ("train", "t10k")
        for kind, dims in (("images", 3), ("labels", 1))
    ]
    return arrays[0], arrays[1].astype("int64"), arrays[2], arrays[3].astype("int64")


def read_labelled_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], np.array([row["label"] for row in rows])


#: TextVectorization's default standardize, "lower_and_strip_punctuation" (this regex)
PUNCTUATION = re.compile(r"""[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~']""")


def text_vectorization_multi_hot(
    train_texts: list[str], max_tokens: int
) -> tuple[dict[str, int], callable]:
    """``TextVectorization(max_tokens, output_mode="multi_hot")`` adapted on the training
    texts: lower-case, strip punctuation, split on whitespace; index 0 is ``[UNK]``, then
    the ``max_tokens - 1`` most frequent words (ties: first seen first)."""

    def tokens(text: str) -> list[str]:
        return PUNCTUATION.sub("", text.lower()).split()

    counts = Counter(word for text in train_texts for word in tokens(text))
    index = {word: i + 1 for i, (word, _) in enumerate(counts.most_common(max_tokens - 1))}

    def vectorize(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), max_tokens), dtype="float32")
        for row, text in enumerate(texts):
            out[row, [index.get(word, 0) for word in set(tokens(text))]] = 1.0
        return out

    return index, vectorize


# -- ch. 2: the first neural network ---------------------------------------------------------


def mnist_dense(data: Path, seed: int, budget: dict) -> dict:
    """2nd ed. 2.1 (listings 2.2-2.5): Dense(512, relu) -> Dense(10, softmax)."""
    train_images, train_labels, test_images, test_labels = mnist(data)
    train_images = train_images.reshape((len(train_images), 28 * 28)).astype("float32") / 255
    test_images = test_images.reshape((len(test_images), 28 * 28)).astype("float32") / 255
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [layers.Dense(512, activation="relu"), layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=budget.get("epochs", 5), batch_size=128, verbose=0)
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
    return {"test/acc": test_acc, "test/loss": test_loss}


# -- ch. 5 (2nd ed. ch. 8): the small convnet ------------------------------------------------


def mnist_convnet(data: Path, seed: int, budget: dict) -> dict:
    """2nd ed. listing 8.1 / 8.3: three Conv2D(3x3, relu), two MaxPooling2D, Dense(10)."""
    train_images, train_labels, test_images, test_labels = mnist(data)
    train_images = train_images.reshape((len(train_images), 28, 28, 1)).astype("float32") / 255
    test_images = test_images.reshape((len(test_images), 28, 28, 1)).astype("float32") / 255
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(filters=32, kernel_size=3, activation="relu")(inputs)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=2)(x)
    x = layers.Conv2D(filters=128, kernel_size=3, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=budget.get("epochs", 5), batch_size=64, verbose=0)
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
    return {"test/acc": test_acc, "test/loss": test_loss}


# -- ch. 4: classifying movie reviews (binary) and newswires (multiclass) -------------------


def text_binary_dense(data: Path, seed: int, budget: dict) -> dict:
    """2nd ed. 4.1 (listings 4.4-4.10): multi-hot of the 10,000 most frequent training
    words -> Dense(16, relu) -> Dense(16, relu) -> Dense(1, sigmoid), rmsprop,
    binary_crossentropy, batch 512, 4 epochs, the final model on all training texts."""
    train_texts, train_labels = read_labelled_csv(data / "train.csv")
    test_texts, test_labels = read_labelled_csv(data / "test.csv")
    _, vectorize = text_vectorization_multi_hot(train_texts, budget.get("max_tokens", 10000))
    x_train, x_test = vectorize(train_texts), vectorize(test_texts)
    y_train, y_test = train_labels.astype("float32"), test_labels.astype("float32")
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            layers.Dense(16, activation="relu"),
            layers.Dense(16, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=budget.get("epochs", 4), batch_size=512, verbose=0)
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    return {"test/acc": test_acc, "test/loss": test_loss}


def reuters_dense(data: Path, seed: int, budget: dict) -> dict:
    """2nd ed. 4.2 (listings 4.14-4.21): multi-hot of the 10,000 most frequent words ->
    Dense(64, relu) -> Dense(64, relu) -> Dense(topics, softmax), rmsprop,
    categorical_crossentropy (one-hot labels), batch 512, 9 epochs on all training wires."""
    train_texts, train_labels = read_labelled_csv(data / "train.csv")
    test_texts, test_labels = read_labelled_csv(data / "test.csv")
    classes = sorted(set(train_labels))
    lookup = {name: i for i, name in enumerate(classes)}
    y_train = keras.utils.to_categorical([lookup[c] for c in train_labels], len(classes))
    y_test = keras.utils.to_categorical([lookup[c] for c in test_labels], len(classes))
    _, vectorize = text_vectorization_multi_hot(train_texts, budget.get("max_tokens", 10000))
    x_train, x_test = vectorize(train_texts), vectorize(test_texts)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            layers.Dense(64, activation="relu"),
            layers.Dense(64, activation="relu"),
            layers.Dense(len(classes), activation="softmax"),
        ]
    )
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=budget.get("epochs", 9), batch_size=512, verbose=0)
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    return {"test/acc": test_acc, "test/loss": test_loss}


# -- ch. 4 (1st ed. 3.6): Boston housing, K-fold ---------------------------------------------


def housing_kfold(data: Path, seed: int, budget: dict) -> dict:
    """2nd ed. 4.3 (listings 4.24-4.31): features normalised by the training rows, Dense(64)
    -> Dense(64) -> Dense(1), rmsprop, mse, mae; 4 consecutive folds x 100 epochs (the
    val MAE of each fold's last epoch, averaged), then 130 epochs on all training rows."""
    train = np.loadtxt(data / "train.csv", delimiter=",", dtype="float64")
    test = np.loadtxt(data / "test.csv", delimiter=",", dtype="float64")
    train_data, train_targets = train[:, :-1], train[:, -1]
    test_data, test_targets = test[:, :-1], test[:, -1]
    mean = train_data.mean(axis=0)
    train_data -= mean
    std = train_data.std(axis=0)
    train_data /= std
    test_data -= mean
    test_data /= std
    keras.utils.set_random_seed(seed)

    def build_model():
        model = keras.Sequential(
            [
                layers.Dense(64, activation="relu"),
                layers.Dense(64, activation="relu"),
                layers.Dense(1),
            ]
        )
        model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
        return model

    k = 4
    num_val_samples = len(train_data) // k
    num_epochs = budget.get("kfold_epochs", 100)
    all_scores = []
    for i in range(k):
        val_data = train_data[i * num_val_samples : (i + 1) * num_val_samples]
        val_targets = train_targets[i * num_val_samples : (i + 1) * num_val_samples]
        partial_train_data = np.concatenate(
            [train_data[: i * num_val_samples], train_data[(i + 1) * num_val_samples :]], axis=0
        )
        partial_train_targets = np.concatenate(
            [train_targets[: i * num_val_samples], train_targets[(i + 1) * num_val_samples :]],
            axis=0,
        )
        model = build_model()
        model.fit(
            partial_train_data, partial_train_targets, epochs=num_epochs, batch_size=16, verbose=0
        )
        _val_mse, val_mae = model.evaluate(val_data, val_targets, verbose=0)
        all_scores.append(val_mae)
    model = build_model()
    model.fit(
        train_data, train_targets, epochs=budget.get("final_epochs", 130), batch_size=16, verbose=0
    )
    test_mse_score, test_mae_score = model.evaluate(test_data, test_targets, verbose=0)
    return {
        "kfold/val_mae_mean": float(np.mean(all_scores)),
        "test/mae": test_mae_score,
        "test/loss": test_mse_score,
    }


# -- 2nd ed. ch. 10: temperature forecasting -------------------------------------------------


def jena_dense(data: Path, seed: int, budget: dict) -> dict:
    """2nd ed. 10.2 (listings 10.1-10.10): every column normalised by the first 50% of the
    rows; windows of 120 hourly samples (sampling_rate 6), target the temperature (in
    degrees, not normalised) delay = 6 * (120 + 24 - 1) rows after a window's first row;
    the naive baseline, then Flatten -> Dense(16, relu) -> Dense(1), rmsprop, mse, mae,
    10 epochs, batch 256, the best epoch by val loss (ModelCheckpoint) tested.

    The book's ``timeseries_dataset_from_array(raw_data[:-delay], temperature[delay:],
    start_index, end_index)`` lets a window's target fall up to 24 h into the next split
    (and on a 4,000-row file leaves no test window at all); here every window and its
    target lie in one split, the windows ``pipelines``' timeseries plugin cuts."""
    with (data).open() as handle:
        lines = handle.read().split("\n")
    header, lines = lines[0].split(","), [line for line in lines[1:] if line]
    temperature = np.zeros((len(lines),))
    raw_data = np.zeros((len(lines), len(header) - 1))
    for i, line in enumerate(lines):
        values = [float(x) for x in line.split(",")[1:]]
        temperature[i] = values[1]
        raw_data[i, :] = values[:]
    num_train_samples = int(0.5 * len(raw_data))
    num_val_samples = int(0.25 * len(raw_data))
    mean = raw_data[:num_train_samples].mean(axis=0)
    raw_data -= mean
    std = raw_data[:num_train_samples].std(axis=0)
    raw_data /= std
    sampling_rate, sequence_length = 6, 120
    delay = sampling_rate * (sequence_length + 24 - 1)
    bounds = {
        "train": (0, num_train_samples),
        "val": (num_train_samples, num_train_samples + num_val_samples),
        "test": (num_train_samples + num_val_samples, len(raw_data)),
    }

    def dataset(split: str) -> tuple[np.ndarray, np.ndarray]:
        first, stop = bounds[split]
        starts = np.arange(first, max(first, stop - delay))
        rows = starts[:, None] + sampling_rate * np.arange(sequence_length)[None, :]
        return raw_data[rows].astype("float32"), temperature[starts + delay].astype("float32")

    splits = {name: dataset(name) for name in bounds}

    def evaluate_naive_method(split: str) -> float:
        samples, targets = splits[split]
        preds = samples[:, -1, 1].astype("float64") * std[1] + mean[1]
        return float(np.abs(preds - targets.astype("float64")).mean())

    metrics = {
        "val/naive_mae": evaluate_naive_method("val"),
        "test/naive_mae": evaluate_naive_method("test"),
    }
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(sequence_length, raw_data.shape[-1]))
    x = layers.Flatten()(inputs)
    x = layers.Dense(16, activation="relu")(x)
    outputs = layers.Dense(1)(x)
    model = keras.Model(inputs, outputs)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "jena_dense.keras")
        callbacks = [keras.callbacks.ModelCheckpoint(path, save_best_only=True)]
        model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
        history = model.fit(
            *splits["train"],
            batch_size=256,
            epochs=budget.get("epochs", 10),
            validation_data=splits["val"],
            callbacks=callbacks,
            verbose=0,
        )
        model = keras.models.load_model(path)
    best = int(np.argmin(history.history["val_loss"]))
    _test_loss, test_mae = model.evaluate(*splits["test"], batch_size=256, verbose=0)
    metrics.update({"best/val_mae": history.history["val_mae"][best], "test/mae": test_mae})
    return metrics


# -- 1st ed. 8.1: character-level LSTM text generation ---------------------------------------

UNKNOWN = "\ufffd"


def char_lstm(data: Path, seed: int, budget: dict) -> dict:
    """1st ed. 8.1 (listings 8.2-8.4): the lower-cased text cut into 60-character windows
    every 3 characters, one-hot; LSTM(128) -> Dense(len(chars), softmax),
    RMSprop(learning_rate=0.01), categorical_crossentropy, batch 128.

    Shared with the pipeline: the first ``max_chars`` characters only, the last 10% held
    out (the book trains on all of it and reports no loss), and ``chars`` = the training
    text's characters plus one for characters only the held-out text has (the pipeline's
    charset). The metric is the lowest held-out loss over the epochs (nats per character).
    """
    text = open(data, encoding="utf-8").read().lower()  # noqa: SIM115 (the book's line)
    if budget.get("max_chars"):
        text = text[: budget["max_chars"]]
    n_val = round(len(text) * 0.1)
    train_text, val_text = text[: len(text) - n_val], text[len(text) - n_val :]
    chars = [*sorted(set(train_text)), UNKNOWN]
    char_indices = {char: chars.index(char) for char in chars}
    maxlen, step = 60, 3

    def vectorize(part: str) -> tuple[np.ndarray, np.ndarray]:
        sentences, next_chars = [], []
        for i in range(0, len(part) - maxlen, step):
            sentences.append(part[i : i + maxlen])
            next_chars.append(part[i + maxlen])
        x = np.zeros((len(sentences), maxlen, len(chars)), dtype=bool)
        y = np.zeros((len(sentences), len(chars)), dtype=bool)
        unknown = char_indices[UNKNOWN]
        for i, sentence in enumerate(sentences):
            for t, char in enumerate(sentence):
                x[i, t, char_indices.get(char, unknown)] = 1
            y[i, char_indices.get(next_chars[i], unknown)] = 1
        return x, y

    (x, y), validation = vectorize(train_text), vectorize(val_text)
    keras.utils.set_random_seed(seed)
    model = keras.models.Sequential()
    model.add(keras.Input(shape=(maxlen, len(chars))))
    model.add(layers.LSTM(128))
    model.add(layers.Dense(len(chars), activation="softmax"))
    optimizer = keras.optimizers.RMSprop(learning_rate=0.01)
    model.compile(loss="categorical_crossentropy", optimizer=optimizer)
    history = model.fit(
        x, y, batch_size=128, epochs=budget.get("epochs", 60), validation_data=validation, verbose=0
    )
    best = float(min(history.history["val_loss"]))
    return {"best/val_loss": best, "best/val_bpc": best / np.log(2)}


# -- 2nd ed. 12.4: the variational autoencoder ----------------------------------------------


def vae_mnist(data: Path, seed: int, budget: dict) -> dict:
    """2nd ed. 12.4 (listings 12.24-12.31): Conv2D(32, 3, s2) -> Conv2D(64, 3, s2) -> Dense(16)
    -> z_mean, z_log_var (2); Dense(7*7*64) -> Conv2DTranspose(64, 32, s2) -> Conv2D(1,
    sigmoid); loss ``reduce_mean(reduce_sum(binary_crossentropy, axis=(1, 2))) +
    reduce_mean(kl_loss)`` (the KL term averaged over the batch AND the 2 latent axes, as
    the book writes it), Adam(), batch 128. The book's ``train_step`` uses a
    ``tf.GradientTape``; here the same loss is Keras 3's backend-agnostic ``compute_loss``.

    Shared with the pipeline: the 7,500 training images minus the same seeded, stratified
    10% that the pipeline validates on (``val-seed{N}.txt``, written by book_parity.py; the
    book trains on all 70,000 digits). Each epoch the held-out images are scored with the
    pipeline's ``val/loss`` definition (reconstruction + KL summed over the latent axes)
    and the epoch where that is lowest is reported, as the pipeline's ``best/`` metrics."""
    from keras import ops

    train_images, _, _, _ = mnist(data)
    val_rows = np.loadtxt(data / f"val-seed{seed}.txt", dtype="int64")
    keep = np.setdiff1d(np.arange(len(train_images)), val_rows)
    digits = np.expand_dims(train_images, -1).astype("float32") / 255
    x_train, x_val = digits[keep], digits[val_rows]
    keras.utils.set_random_seed(seed)
    latent_dim = 2
    encoder_inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    encoder = keras.Model(encoder_inputs, [z_mean, z_log_var], name="encoder")
    latent_inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(latent_inputs)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    decoder_outputs = layers.Conv2D(1, 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")

    class Sampler(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, z_mean, z_log_var):
            epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    class VAE(keras.Model):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder, self.decoder, self.sampler = encoder, decoder, Sampler()

        def call(self, data):
            z_mean, z_log_var = self.encoder(data)
            return self.decoder(self.sampler(z_mean, z_log_var)), z_mean, z_log_var

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            reconstruction, z_mean, z_log_var = y_pred
            reconstruction_loss = ops.mean(
                ops.sum(keras.losses.binary_crossentropy(x, reconstruction), axis=(1, 2))
            )
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            return reconstruction_loss + ops.mean(kl_loss)

    history = []

    class HeldOut(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            recon, kl = [], []
            for start in range(0, len(x_val), 128):
                batch = x_val[start : start + 128]
                reconstruction, z_mean, z_log_var = (
                    np.asarray(t, dtype="float64") for t in self.model(batch)
                )
                p = np.clip(reconstruction, 1e-7, 1 - 1e-7)
                bce = -(batch * np.log(p) + (1 - batch) * np.log(1 - p))
                recon.append(bce.reshape(len(batch), -1).sum(axis=1))
                # the book's KL term: averaged over the latent axes, as in its loss
                kl.append(-0.5 * (1 + z_log_var - z_mean**2 - np.exp(z_log_var)).mean(axis=1))
            recon_mean, kl_mean = np.concatenate(recon).mean(), np.concatenate(kl).mean()
            history.append((recon_mean + kl_mean, recon_mean, kl_mean))

    vae = VAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.Adam())
    vae.fit(x_train, epochs=budget.get("epochs", 30), batch_size=128, verbose=0,
            callbacks=[HeldOut()])  # fmt: skip
    loss, reconstruction, kl = min(history)
    return {
        "best/val_loss": loss,
        "best/val_reconstruction_loss": reconstruction,
        "best/val_kl_loss": kl,
    }


ROWS = {
    "mnist_dense": mnist_dense,
    "mnist_convnet": mnist_convnet,
    "imdb_dense": text_binary_dense,
    "sentences_dense": text_binary_dense,
    "reuters_r8": reuters_dense,
    "housing_kfold": housing_kfold,
    "jena_dense": jena_dense,
    "char_lstm": char_lstm,
    "vae_mnist": vae_mnist,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", choices=sorted(ROWS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, required=True, help="the row's prepared data")
    parser.add_argument("--budget", type=json.loads, default={}, help='JSON, e.g. {"epochs": 1}')
    args = parser.parse_args()
    started = time.perf_counter()
    metrics = ROWS[args.row](args.data, args.seed, args.budget)
    result = {
        "row": args.row,
        "seed": args.seed,
        "metrics": {name: float(value) for name, value in metrics.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
