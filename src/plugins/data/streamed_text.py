"""Texts streamed from disk: the vocabulary fitted chunk by chunk, token ids memory-mapped.

The other path of :class:`plugins.data.text.TextDataModule`, for data whose
vectorized tensors would not fit ``data.memory_budget``. The texts are read a chunk at a
time, in file order, and never held whole:

1. the training split's texts build a tokenizer of every word they hold
   (:meth:`~plugins.data.vectorize.TextVectorizer.full_tokenizer`), then are tokenized
   with it to count the words (and bigrams) and to keep their ids in a scratch file;
2. the counts choose the vocabulary exactly as the in-memory fit does (ranked by count,
   then text: the order the texts come in plays no part), and the kept ids are remapped
   into it, as the in-memory path remaps them; the idf weights are summed per chunk;
3. every split's ids go to disk: ``int``/``char`` sequences as an ``(N, T)`` int32
   ``.npy`` memory map, written row by row at each text's place in the split; bags as
   each text's token ids (bigrams included), one after the other, with the start and
   length of each text's run.

Batches (:class:`StreamedTextBatches`) come in the in-memory path's order (the same seeded
shuffle, the same shards) and are made with the same
:meth:`~plugins.data.vectorize.TextVectorizer.tensors`: the numbers the model sees are the
in-memory path's. The files live in the text cache (``data.cache_dir``, next to the
in-memory entry, ``<entry>/streamed/``) or, with no cache, in a temporary folder removed
when the data module goes.

:class:`StreamedTextSplits` is the data module's side of it: which path to take (the
in-memory tensors' size, estimated from the number of texts before any is read, against
``data.memory_budget``), the streamed setup and its batches.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pipelines.api import (
    ConfigValueError,
    DataNotFoundError,
    TensorBatches,
    distributed_shard,
    no_validation_data,
    unreadable_file_error,
)
from plugins.data.memory_budget import choose_data_path, count_stream_lines
from plugins.data.vectorize import Encoded, TextVectorizer, TokenCounts, ragged_ids

log = logging.getLogger(__name__)

#: the folder of an entry of the text cache that holds its streamed form
STREAMED = "streamed"
SPLITS = ("train", "val", "test")
#: the test texts a streamed setup keeps for the report's sample predictions
STREAMED_TEST_TEXTS = 512
_FORMAT = 1
#: texts tokenized at once: ``tokenizers`` spreads a chunk over its threads
CHUNK_TEXTS = 4096
#: ... unless they hold more characters than this (long documents)
CHUNK_CHARS = 1 << 24


class TextSource(Protocol):
    """Where a split's texts are read from, by row number."""

    def texts(self, rows: np.ndarray) -> Iterator[str]:
        """The texts of ``rows`` (ascending), in that order, read from disk as they go."""
        ...


def read_review(path: Path) -> str:
    """One text file (an IMDB review) as both paths read it; a file that may not be read is
    one paragraph naming it (``data.root``)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except PermissionError as exc:
        raise unreadable_file_error(path, "data.root") from exc
    except FileNotFoundError:
        raise DataNotFoundError(
            f"{path} went missing while the data was read: leave the data's files in place "
            "during a run, and run it again."
        ) from None


class FileTexts:
    """One text per file (an IMDB review folder)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def texts(self, rows: np.ndarray) -> Iterator[str]:
        for row in rows.tolist():
            yield read_review(self.paths[row])


# -- how much memory the in-memory path would take ----------------------------------------


def decoded_size(settings: Any, count: int, width: int) -> tuple[int, str]:
    """Bytes of ``count`` texts as the in-memory path's tensors, and what they are, in words:
    int64 ``(N, sequence_length)`` ids, or float32 ``(N, width)`` bags."""
    if settings.sequences:
        return count * settings.sequence_length * 8, f"{settings.sequence_length} int64 ids each"
    return count * width * 4, f"float32 bags of {width} tokens"


def bag_width(settings: Any, text_bytes: int) -> int:
    """The bags' width before the vocabulary is fitted: ``max_tokens``; without a cap, at
    most a token per two bytes of text (a word and a space), bigrams as many again."""
    if settings.max_tokens:
        return int(settings.max_tokens)
    return 2 + text_bytes // 2 * (2 if settings.ngrams == 2 else 1)


def count_lines(path: Path) -> int:
    """Lines of ``path``, counted without parsing it."""
    with path.open("rb") as stream:
        return count_stream_lines(stream)


# -- one split's ids on disk ---------------------------------------------------------------


@dataclass
class SplitStore:
    """One split's token ids on disk and its labels (in memory: 8 bytes a text).

    Sequences: ``ids`` is ``(N, T)``. Bags: ``ids`` is flat, text ``i``'s tokens at
    ``ids[starts[i] : starts[i] + lengths[i]]``."""

    count: int
    labels: np.ndarray
    ids: np.ndarray
    starts: np.ndarray | None = None
    lengths: np.ndarray | None = None

    def encoded(self, index: np.ndarray) -> Encoded:
        """The texts at ``index`` (any order) as :class:`Encoded`, as the in-memory path
        holds them before :meth:`~plugins.data.vectorize.TextVectorizer.tensors`."""
        if self.starts is None or self.lengths is None:
            return Encoded(len(index), np.asarray(self.ids[index]))
        starts, lengths = self.starts[index], self.lengths[index]
        rows = np.repeat(np.arange(len(index), dtype=np.int32), lengths)
        begin = np.cumsum(lengths) - lengths  # where each text starts in the batch
        where = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - begin, lengths)
        return Encoded(len(index), np.asarray(self.ids[where]), rows)

    @classmethod
    def open(cls, folder: Path, name: str, meta: dict[str, Any]) -> SplitStore:
        count = int(meta["counts"][name])
        labels = np.load(folder / f"{name}.labels.npy")
        if len(labels) != count:
            raise ValueError(f"{name}: {len(labels)} labels for {count} texts")
        if meta["sequence_length"] is not None:
            ids = np.load(folder / f"{name}.ids.npy", mmap_mode="r" if count else None)
            if ids.shape != (count, meta["sequence_length"]):
                raise ValueError(f"{name}: ids of shape {ids.shape} for {count} texts")
            return cls(count, labels, ids)
        tokens = int(meta["tokens"][name])
        path = folder / f"{name}.ids.bin"
        if path.stat().st_size != tokens * 4:
            raise ValueError(f"{name}.ids.bin holds {path.stat().st_size} bytes, not {tokens * 4}")
        flat = (
            np.memmap(path, dtype=np.int32, mode="r", shape=(tokens,))
            if tokens
            else np.zeros(0, dtype=np.int32)
        )
        starts = np.load(folder / f"{name}.starts.npy")
        lengths = np.load(folder / f"{name}.lengths.npy")
        if len(starts) != count or int(lengths.sum()) != tokens:
            raise ValueError(f"{name}: the starts and lengths do not cover its ids")
        return cls(count, labels, flat, starts, lengths)


class SplitWriter:
    """Writes one split's :class:`Encoded` chunks at their places in the split."""

    def __init__(self, folder: Path, name: str, labels: np.ndarray, length: int | None) -> None:
        self.folder, self.name, self.count = folder, name, len(labels)
        np.save(folder / f"{name}.labels.npy", np.asarray(labels, dtype=np.int64))
        self.tokens = 0
        self.ids: Any = None
        self.stream: Any = None
        if length is not None:
            path = folder / f"{name}.ids.npy"
            if self.count:
                self.ids = np.lib.format.open_memmap(
                    path, mode="w+", dtype=np.int32, shape=(self.count, length)
                )
            else:
                np.save(path, np.zeros((0, length), dtype=np.int32))
        else:
            self.stream = (folder / f"{name}.ids.bin").open("wb")
            self.starts = np.zeros(self.count, dtype=np.int64)
            self.lengths = np.zeros(self.count, dtype=np.int64)

    def write(self, positions: np.ndarray, encoded: Encoded) -> None:
        if self.stream is None:
            self.ids[positions] = encoded.ids
            return
        assert encoded.rows is not None
        order = np.argsort(encoded.rows, kind="stable")  # each text's tokens together
        lengths = np.bincount(encoded.rows, minlength=encoded.count).astype(np.int64)
        self.stream.write(np.ascontiguousarray(encoded.ids[order], dtype=np.int32).tobytes())
        self.starts[positions] = self.tokens + np.cumsum(lengths) - lengths
        self.lengths[positions] = lengths
        self.tokens += int(lengths.sum())

    def close(self) -> int:
        """Flush to disk; the number of ids written (bags)."""
        if self.stream is None:
            if self.ids is not None:
                self.ids.flush()
                del self.ids
            return 0
        self.stream.close()
        np.save(self.folder / f"{self.name}.starts.npy", self.starts)
        np.save(self.folder / f"{self.name}.lengths.npy", self.lengths)
        return self.tokens


# -- the whole data set on disk ------------------------------------------------------------


@dataclass
class TextStreams:
    """The splits' ids on disk, the vectorizer that made them and the class names."""

    folder: Path
    vectorizer: TextVectorizer
    classes: list[str]
    splits: dict[str, SplitStore]


def read_streams(folder: Path, names: Sequence[str]) -> TextStreams | None:
    """What :func:`vectorize_to_disk` wrote into ``folder``; None where it wrote nothing
    complete (an entry whose ``meta.json``, written last, is missing or unusable)."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, not {_FORMAT}")
        vectorizer = TextVectorizer.load(folder / "tokenizer.json")
        splits = {name: SplitStore.open(folder, name, meta) for name in names}
        classes = [str(name) for name in meta["classes"]]
    except Exception as exc:  # truncated or foreign files: prepare again, overwrite them
        log.warning("text: ignoring the unusable streamed cache %s (%s)", folder, exc)
        return None
    return TextStreams(folder, vectorizer, classes, splits)


#: split name -> (where its texts are, their row numbers in split order, their labels)
Parts = dict[str, tuple[TextSource, np.ndarray, np.ndarray]]


def vectorize_to_disk(
    parts: Parts,
    vectorizer: TextVectorizer,
    fit: bool,
    folder: Path,
    classes: list[str],
    keep_test_texts: int,
) -> tuple[TextStreams, list[str]]:
    """Fit ``vectorizer`` on the training part's texts (``fit``), vectorize every part into
    ``folder``; the streams, and the first ``keep_test_texts`` test texts (the report's).

    Written into a scratch folder beside ``folder``, renamed into place once complete: a run
    stopped half-way leaves nothing that passes for the data."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = folder.parent / f".{folder.name}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        test_texts = _write(parts, vectorizer, fit, scratch, classes, keep_test_texts)
        if read_streams(folder, list(parts)) is None:  # absent, incomplete or damaged
            shutil.rmtree(folder, ignore_errors=True)
            try:
                os.replace(scratch, folder)
            except OSError:
                if read_streams(folder, list(parts)) is None:
                    raise
        shutil.rmtree(scratch, ignore_errors=True)  # another process wrote the entry first
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    streams = read_streams(folder, list(parts))
    if streams is None:
        raise OSError(f"the streamed text data written to {folder} cannot be read back")
    return streams, test_texts


def scratch_folder() -> Path:
    """A folder for the streamed ids when there is no cache (``data.cache_dir: null``)."""
    return Path(tempfile.mkdtemp(prefix="pipelines-text-streamed-"))


def _write(
    parts: Parts,
    vectorizer: TextVectorizer,
    fit: bool,
    folder: Path,
    classes: list[str],
    keep_test_texts: int,
) -> list[str]:
    settings = vectorizer.settings
    length = settings.sequence_length if settings.sequences else None
    writers = {
        name: SplitWriter(folder, name, labels, length) for name, (_, _, labels) in parts.items()
    }
    remaining = list(parts)
    if fit:
        _fit(vectorizer, *parts["train"][:2], writers["train"], folder)
        remaining.remove("train")
    kept: dict[int, str] = {}
    for name in remaining:
        source, rows, _ = parts[name]
        for positions, texts in _chunks(source, rows):
            writers[name].write(positions, vectorizer.encode(texts))
            if name == "test":
                shown = zip(positions.tolist(), texts, strict=True)
                kept.update((place, text) for place, text in shown if place < keep_test_texts)
    tokens = {name: writer.close() for name, writer in writers.items()}
    vectorizer.save(folder / "tokenizer.json")
    meta = {
        "format": _FORMAT,
        "classes": list(classes),
        "counts": {name: writer.count for name, writer in writers.items()},
        "tokens": tokens,
        "sequence_length": length,
    }
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return [kept[p] for p in sorted(kept)]


def _fit(
    vectorizer: TextVectorizer,
    source: TextSource,
    rows: np.ndarray,
    writer: SplitWriter,
    folder: Path,
) -> None:
    """:meth:`~plugins.data.vectorize.TextVectorizer.fit_encode` on a stream of the
    training texts, its ids written by ``writer``."""
    full = vectorizer.full_tokenizer(
        (texts for _, texts in _chunks(source, rows)), length=len(rows)
    )
    counts = TokenCounts(full, vectorizer.settings.ngrams)
    scratch = folder / "train.full.bin"  # the training texts' ids by the full tokenizer
    sizes: list[tuple[np.ndarray, np.ndarray]] = []  # (positions, lengths) of each chunk
    with scratch.open("wb") as stream:
        for positions, texts in _chunks(source, rows):
            flat, lengths = ragged_ids(full, texts)
            counts.add(flat, lengths)
            stream.write(flat.astype(np.int32).tobytes())
            sizes.append((positions, lengths))
    remap = vectorizer.learn_vocabulary(counts)
    tf_idf = vectorizer.settings.mode == "tf_idf"
    frequency = np.zeros(vectorizer.width, dtype=np.int64)
    with scratch.open("rb") as stream:
        for positions, lengths in sizes:
            flat = np.fromfile(stream, dtype=np.int32, count=int(lengths.sum()))
            encoded = vectorizer.encode_remapped(remap, flat.astype(np.int64), lengths)
            if tf_idf:
                frequency += vectorizer.document_frequency(encoded)
            writer.write(positions, encoded)
    scratch.unlink()
    if tf_idf:
        vectorizer.idf = vectorizer.idf_weights(frequency, len(rows))


def _chunks(source: TextSource, rows: np.ndarray) -> Iterator[tuple[np.ndarray, list[str]]]:
    """The texts of ``rows`` (a split's rows, in split order) in chunks read in file order,
    each with the texts' places in the split."""
    order = np.argsort(rows, kind="stable")
    texts = source.texts(rows[order])
    done = 0
    while done < len(order):
        chunk: list[str] = []
        chars = 0
        for text in texts:
            chunk.append(text)
            chars += len(text)
            if len(chunk) >= CHUNK_TEXTS or chars >= CHUNK_CHARS:
                break
        if not chunk:
            raise DataNotFoundError(
                f"The texts ran out after {done} of the {len(order)} expected: the data's "
                "files changed while they were read. Leave them as they are during a run, "
                "and run it again."
            )
        yield order[done : done + len(chunk)], chunk
        done += len(chunk)


# -- the data module's streamed path -------------------------------------------------------


class StreamedTextSplits:
    """The streamed path of :class:`~plugins.data.text.TextDataModule` (mixed into it): which
    path to take, the streamed setup, its cache entry and its batches. Its attributes and
    its other methods (:meth:`stream_texts`, :meth:`split_rows`, the cache's) are that
    class's."""

    data_path: str | None
    streams: dict[str, SplitStore]
    vectorizer: TextVectorizer | None
    test_texts: list[str] | None

    def _input_shape(self) -> tuple[int, ...]:
        if self.data_path != "streamed":
            return tuple(self.splits["train"][0].shape[1:])
        assert self.vectorizer is not None
        if self.vectorize.sequences:
            return (self.vectorize.sequence_length,)
        return (self.vectorizer.width,)

    def _streamed(self) -> bool:
        """Which path to take (``data_path``), said in one log line with the reason."""
        if not self.can_stream:
            if self.in_memory is False:
                raise ConfigValueError(
                    f"data.in_memory=false: the {self.cache_name} data cannot be streamed "
                    "from disk; set data.in_memory=auto or true."
                )
            self.data_path = "in_memory"
            return False

        def size() -> tuple[int, str]:
            count = self.count_texts()
            if self.fixed_vectorizer is not None:
                width = self.fixed_vectorizer.width
            else:
                width = bag_width(self.vectorize, self._text_bytes())
            needed, what = decoded_size(self.vectorize, count, width)
            return needed, f"about {count} texts vectorized ({what})"

        self.data_path = choose_data_path(
            self.in_memory,
            self.memory_budget,
            size,
            log=log,
            plugin=self.cache_name,
            kept="vectorizing into memory",
            streamed="streaming token ids from disk",
        )
        return self.data_path == "streamed"

    def _text_bytes(self) -> int:
        """The input files' bytes (an uncapped vocabulary's bound); only for bags."""
        if self.vectorize.sequences or self.vectorize.max_tokens:
            return 0
        return sum(path.stat().st_size for path in self.input_files())

    def _set_up_streams(self, started: float) -> None:
        entry, loaded = self._cached_streams()
        if loaded is None:
            loaded = self._vectorize_to_disk(entry)
        self.vectorizer = loaded.vectorizer
        self.classes = loaded.classes
        self.streams = loaded.splits
        self.tokenizer_path = loaded.folder / "tokenizer.json"
        sizes = ", ".join(f"{name} {self.streams[name].count}" for name in SPLITS)
        log.info(
            "%s: %d classes, %s, %s %s in %.1fs, streamed from %s%s",
            self.cache_name,
            len(self.classes),
            sizes,
            self.vectorize.mode,
            self._input_shape(),
            time.perf_counter() - started,
            loaded.folder,
            " (cached)" if entry is None else "",
        )

    def _cached_streams(self) -> tuple[Path | None, TextStreams | None]:
        """:meth:`_cached` for the streamed path: the folder to write (None: nothing to
        write) and what the cache holds there (``<entry>/streamed/``)."""
        entry = self._cache_entry()
        if entry is None:
            folder = scratch_folder()
            weakref.finalize(self, shutil.rmtree, folder, True)
            return folder / STREAMED, None
        if self.fixed_vectorizer is not None:
            own = self._cache_entry(fitted=True)
            if own is not None and self._fits_run(own / STREAMED):
                loaded = read_streams(own / STREAMED, SPLITS)
                if loaded is not None and self.run_classes in (None, loaded.classes):
                    return None, loaded
        loaded = read_streams(entry / STREAMED, SPLITS)
        return (None, loaded) if loaded is not None else (entry / STREAMED, None)

    def _vectorize_to_disk(self, folder: Path | None) -> TextStreams:
        """:meth:`_prepare` chunk by chunk, into ``folder``."""
        assert folder is not None
        data = self._in_run_classes(self.stream_texts())
        rows = self.split_rows({name: labels for name, (_, labels) in data.items()})
        parts = {
            name: (data[part][0], index, np.asarray(data[part][1], dtype=np.int64)[index])
            for name, (part, index) in rows.items()
        }
        if not len(parts["train"][1]):
            raise self._no_training_texts()
        fit = self.fixed_vectorizer is None
        vectorizer = TextVectorizer(self.vectorize) if fit else self.fixed_vectorizer
        assert vectorizer is not None
        if fit:
            vectorizer.classes = list(self.classes)  # saved with it: a rebuild's labels
        try:
            streams, self.test_texts = vectorize_to_disk(
                parts, vectorizer, fit, folder, self.classes, STREAMED_TEST_TEXTS
            )
        except OSError as exc:
            if self.cache_dir is None or not folder.is_relative_to(self.cache_dir):
                raise
            # a read-only cache: a temporary folder instead (removed with this module)
            log.warning("%s: could not write to the cache %s (%s)", self.cache_name, folder, exc)
            scratch = scratch_folder()
            weakref.finalize(self, shutil.rmtree, scratch, True)
            return self._vectorize_to_disk(scratch / STREAMED)
        return streams

    def _batches(self, split: str, shuffle: bool) -> Any:
        if self.data_path != "streamed":
            return super()._batches(split, shuffle)
        assert self.vectorizer is not None
        rank, world_size = distributed_shard(split)
        per_call = self._batches_per_call(split)
        return StreamedTextBatches(
            self.streams[split],
            self.vectorizer,
            batch_size=self.batch_size * per_call,
            shuffle=shuffle,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            batches_per_call=per_call,
        )

    def val_dataloader(self) -> Any:
        if self.data_path != "streamed":
            return super().val_dataloader()
        if not self.streams["val"].count:
            return no_validation_data("items")
        return self._batches("val", shuffle=False)


# -- batches -------------------------------------------------------------------------------


class StreamedTextBatches(TensorBatches):
    """The in-memory path's batches (:class:`~pipelines.api.TensorBatches`: the same seeded
    order, shards and fused batches), each read from disk and vectorized as it is needed."""

    def __init__(self, store: SplitStore, vectorizer: TextVectorizer, **kwargs: Any) -> None:
        labels = torch.from_numpy(np.asarray(store.labels, dtype=np.int64))
        super().__init__(torch.arange(store.count), labels, **kwargs)
        self.store = store
        self.vectorizer = vectorizer

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for index, labels in super().__iter__():
            encoded = self.store.encoded(index.numpy())
            yield self.vectorizer.tensors(encoded), labels
