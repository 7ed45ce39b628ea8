"""Character-level LSTM text generation (book 1st ed. 8.1 / 2nd ed. 12.1).

The book: ``LSTM(128)`` over one-hot characters -> ``Dense(len(chars), softmax)``, RMSprop
at 0.01, categorical cross-entropy on the next character; after every epoch it samples
400 characters at temperatures 0.2, 0.5, 1.0 and 1.2 with its ``sample()``::

    preds = np.log(preds) / temperature
    exp_preds = np.exp(preds)
    preds = exp_preds / np.sum(exp_preds)
    probas = np.random.multinomial(1, preds, 1)
    return np.argmax(probas)

:class:`CharLSTM` is that network (one-hot input as the book, or a learned embedding;
stacked layers and dropout optional) as a :class:`~plugins.models.base.Classifier` over
the windows of :mod:`plugins.data.text_corpus`, and a
:class:`~plugins.models.generative.Generative` model. Generation reads, as the book's loop does,
the last window of characters (the model's ``sequence_length``) before each new one: the
context it was trained on, never a longer one. All temperatures are drawn in one batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F

from pipelines.api import (
    ConfigValueError,
    DropoutRate,
    LayerCount,
    LayerSize,
    OptimizerArguments,
    Unpack,
    Width,
)
from plugins.models.base import Classifier, scaled
from plugins.models.generative import EpochSamples

#: the data's id for characters the training text lacks (never sampled)
UNKNOWN = "\ufffd"
LN2 = math.log(2.0)


def reweight(log_probs: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """The book's temperature reweighting: ``softmax(log(p) / temperature)`` on the last dim.

    A temperature of 0 (or below) gives the one-hot distribution of the argmax, the limit
    of the formula as the temperature goes to 0.
    """
    temperature = torch.as_tensor(temperature, dtype=log_probs.dtype, device=log_probs.device)
    greedy = F.one_hot(log_probs.argmax(dim=-1), log_probs.shape[-1]).to(log_probs.dtype)
    scaled_logits = log_probs / temperature.clamp(min=torch.finfo(log_probs.dtype).tiny)
    return torch.where(temperature > 0, scaled_logits.softmax(dim=-1), greedy)


def require_characters(charset: Sequence[str] | None, input_shape: tuple[int, ...]) -> None:
    """char_lstm reads windows of character ids with their ``charset``, which only
    character-corpus data (``data=text_corpus``) gives: said as the model is built, right
    after the data is prepared. On other data the run trained on nothing it could read:
    digits crashed in the first step ("one_hot is only applicable to index tensor")."""
    if charset is not None and len(tuple(input_shape)) == 1:
        return
    raise ConfigValueError(
        f"model char_lstm learns to continue a text one character at a time: it reads "
        f"windows of characters, with the characters they are made of (the data's charset), "
        f"which data=text_corpus gives; this data gives inputs of shape {tuple(input_shape)} "
        f"and no charset. Run `python -m pipelines.run pipeline=generative model=char_lstm "
        f"data=text_corpus` (data.path=<a .txt file>, or the bundled default text). To "
        f"classify this data, choose a model for it instead (e.g. model=mlp or convnet for "
        f"images; lstm, gru, conv1d or transformer for texts)."
    )


class CharNet(nn.Module):
    """Character ids -> one-hot (``embedding_dim`` null) or Embedding -> LSTM -> Dense."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int | None,
        units: int,
        num_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if embedding_dim else None
        self.lstm = nn.LSTM(
            embedding_dim or vocab_size,
            units,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(units, num_classes)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(ids)
        return F.one_hot(ids, self.vocab_size).to(self.head.weight.dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits of the character after each window ``(B, T)`` -> ``(B, classes)``."""
        outputs, _ = self.lstm(self.features(ids))
        return self.head(self.dropout(outputs[:, -1]))


class CharLSTM(Classifier):
    """The book's char-level LSTM: next-character classification, then sampling.

    ``units`` (times ``width``) per layer, ``num_layers`` stacked, ``dropout`` between them
    and before the head; ``embedding_dim`` null feeds one-hot characters as the book.
    Logs ``val/bpc`` (the validation loss in bits per character) beside ``val/loss`` and
    ``val/acc``, and ``val/unigram_bpc``, the data's unigram baseline, once per epoch.
    The data passes ``charset`` (characters by id), ``seed_text`` and ``unigram_bpc``; they
    are kept in the hyper-parameters, so a model rebuilt from a run decodes on its own.

    Sampling: :meth:`generate` writes ``temperature-<t>.txt`` per temperature. During
    training every ``sample_every`` epochs (0: never) it draws ``epoch_length`` characters
    (``samples/epoch-NNN/`` in the run); the ``generate`` stage draws ``length``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        vocab_size: int | None = None,
        charset: list[str] | None = None,
        seed_text: str | None = None,
        unigram_bpc: float | None = None,
        embedding_dim: LayerSize | None = None,
        units: LayerSize = 128,
        num_layers: LayerCount = 1,
        dropout: DropoutRate = 0.0,
        width: Width = 1.0,
        temperatures: Sequence[float] = (0.2, 0.5, 1.0, 1.2),
        length: int = 400,
        epoch_length: int = 200,
        sample_every: int = 1,
        **training: Unpack[OptimizerArguments],
    ) -> None:
        # the book's RMSprop at 0.01 (conf/model/char_lstm.yaml), where lr is not given
        super().__init__(**{"lr": 0.01, **training})
        self.save_hyperparameters()
        require_characters(charset, input_shape)
        if num_layers < 1:
            raise ConfigValueError(f"'model.num_layers' must be at least 1, got {num_layers}.")
        if not 0.0 <= dropout < 1.0:
            raise ConfigValueError(f"'model.dropout' must be in [0, 1), got {dropout}.")
        if charset is not None and len(charset) != num_classes:
            raise ConfigValueError(
                f"The charset has {len(charset)} characters but the model {num_classes} classes."
            )
        for key, value in (("length", length), ("epoch_length", epoch_length)):
            if value < 1:
                raise ConfigValueError(f"'model.{key}' must be at least 1, got {value}.")
        self.charset = list(charset) if charset is not None else None
        self.seed_text = seed_text
        self.unigram_bpc = unigram_bpc
        self.temperatures = tuple(float(t) for t in temperatures)
        self.length = length
        self.epoch_length = epoch_length
        self.sample_every = sample_every
        #: the characters read before each drawn one: the training windows' length
        self.window = int(next(iter(input_shape)))
        (size,) = scaled((units,), width)
        self.net = CharNet(
            vocab_size or num_classes, num_classes, embedding_dim, size, num_layers, dropout
        )
        self.initialise()

    # -- training and metrics -------------------------------------------------------------

    def _evaluate_bpc(self, batch: Any, stage: str) -> None:
        loss = self._evaluate(batch, stage)
        values = {"bpc": loss / LN2}
        if stage == "val" and self.unigram_bpc is not None:
            values["unigram_bpc"] = torch.as_tensor(float(self.unigram_bpc))
        self.accumulate(stage, values, batch[1].shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate_bpc(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate_bpc(batch, "test")

    def configure_callbacks(self) -> list[Callback]:
        if self.sample_every < 1:
            return []
        trainer = self._trainer  # samples stay on disk beside the checkpoints
        root = getattr(trainer, "default_root_dir", None) if trainer is not None else None
        return [
            EpochSamples(
                every_n_epochs=self.sample_every,
                output_dir=Path(root) / "samples" if root else None,
            )
        ]

    # -- sampling -------------------------------------------------------------------------

    def encode(self, text: str) -> torch.Tensor:
        """Ids of ``text``; a character not in the charset: its lower case, else unknown."""
        charset = self._require_charset()
        index = {char: i for i, char in enumerate(charset)}
        unknown = len(charset) - 1
        return torch.tensor(
            [index.get(char, index.get(char.lower(), unknown)) for char in text],
            dtype=torch.int64,
        )

    def decode(self, ids: Sequence[int]) -> str:
        charset = self._require_charset()
        return "".join(charset[int(i)] for i in ids)

    def _require_charset(self) -> list[str]:
        if not self.charset:
            raise ConfigValueError(
                "This char model has no charset (the characters by id), so it cannot encode "
                "or decode text; build it from text data (data=text_corpus)."
            )
        return self.charset

    @torch.no_grad()
    def sample_ids(
        self,
        seed_text: str,
        length: int,
        temperatures: Sequence[float],
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(len(temperatures), length)`` ids drawn after ``seed_text``, one row a temperature.

        Each character is drawn after the last ``self.window`` characters (seed and drawn
        ones), the window the model was trained on, as the book's loop does: an LSTM state
        carried past the window continues contexts longer than any it learned. The unknown
        id is never drawn.
        """
        if not seed_text:
            raise ConfigValueError("The seed text is empty; give at least one character.")
        device = self.net.head.weight.device
        seed = self.encode(seed_text).to(device)
        temps = torch.tensor([float(t) for t in temperatures], dtype=torch.float64)
        context = seed.expand(len(temps), -1)[:, -self.window :]
        mask_unknown = self.charset is not None and self.charset[-1] == UNKNOWN
        drawn = torch.empty((len(temps), length), dtype=torch.int64)
        for position in range(length):
            log_probs = self.net(context).double().log_softmax(dim=-1).cpu()
            if mask_unknown:
                log_probs[:, -1] = -math.inf
            probabilities = reweight(log_probs, temps[:, None])
            chosen = torch.multinomial(probabilities, 1, generator=generator)  # (T, 1)
            drawn[:, position] = chosen[:, 0]
            context = torch.cat([context, chosen.to(device)], dim=1)[:, -self.window :]
        return drawn

    def generate(
        self,
        output_dir: Path,
        epoch: int | None = None,
        temperatures: Sequence[float] | None = None,
        length: int | None = None,
        seed_text: str | None = None,
        seed: int | None = None,
    ) -> list[Path]:
        """One UTF-8 file per temperature, ``temperature-<t>.txt``, of ``length`` characters.

        Defaults: the model's ``temperatures``; ``epoch_length`` characters after an epoch,
        else ``length``; the data's ``seed_text`` (the first window of the training text).
        The draw is deterministic given the torch seed (``seed``, else the seed torch was
        last seeded with, plus the epoch) and uses its own generator, so sampling during
        training changes nothing else.
        """
        temperatures = tuple(temperatures if temperatures is not None else self.temperatures)
        if length is None:
            length = self.epoch_length if epoch is not None else self.length
        seed_text = seed_text if seed_text is not None else self.seed_text
        if not seed_text:
            seed_text = self._require_charset()[0]
        if seed is None:
            seed = torch.initial_seed() + (epoch or 0)
        generator = torch.Generator().manual_seed(int(seed) % (2**63))
        was_training = self.training
        self.eval()
        try:
            drawn = self.sample_ids(seed_text, length, temperatures, generator)
        finally:
            self.train(was_training)
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for temperature, ids in zip(temperatures, drawn.tolist(), strict=True):
            path = output_dir / f"temperature-{float(temperature)}.txt"
            path.write_text(self.decode(ids), encoding="utf-8", newline="")
            files.append(path)
        return files
