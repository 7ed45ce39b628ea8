"""The IMDB movie reviews (Maas et al. 2011; book ch. 3/4 and 11) from ``aclImdb_v1.tar.gz``.

``data.root`` holds the extracted ``aclImdb/`` folder (or is that folder), else the archive,
which is extracted; ``data.download=true`` fetches the archive (checked by md5) when neither
is there. The layout is ``aclImdb/{train,test}/{pos,neg}/*.txt`` (12,500 reviews in each);
``unsup/`` is ignored. The validation split is a seeded, stratified ``val_fraction`` of
train (the book: 20%, 20,000 / 5,000). Reviews are raw text (``<br />`` tags included);
the vectorizer standardizes them.

A folder counts as the dataset only if it is complete. An extraction by this module writes
``aclImdb/.extracted.json`` (how many reviews each of the four folders holds) just before
its folder is renamed into place, and a folder with that record must still hold that many;
a folder placed by hand has no record, and each of its four folders must hold a review
(its counts are compared with the real 12,500 in a warning, since a subset of one's own is
allowed). Counting names costs a directory listing, never a read of the 50,000 reviews.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path, PurePosixPath

import numpy as np

from pipelines.api import BatchSize, DataNotFoundError, RemoteFile, Seed, ensure_file, extract_tar
from plugins.data.memory_budget import InMemory
from plugins.data.streamed_text import FileTexts, read_review
from plugins.data.text import TextDataModule, Texts, TextStreamParts
from plugins.data.vectorize import VectorizeSettings
from plugins.data.vision import limit_stratified

#: md5 as published with torchtext's IMDB dataset (and used by many loaders since)
ARCHIVE = RemoteFile(
    "aclImdb_v1.tar.gz",
    ("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",),
    md5="7c2ac02c03563afcf9b574c7e56c153a",
)
FOLDER = "aclImdb"
PARTS = ("train", "test")
#: class names (sorted, as Keras' text_dataset_from_directory numbers them): neg 0, pos 1
CLASSES = ("neg", "pos")
#: written into ``aclImdb/`` by a complete extraction: the reviews each folder then held
MARKER = ".extracted.json"
#: reviews in each of the real dataset's four folders ({train,test}/{pos,neg})
REAL_COUNT = 12_500
log = logging.getLogger(__name__)


def _is_review(name: str) -> bool:
    return name.endswith(".txt") and not name.startswith(".")


def review_files(folder: Path, part: str, label: str) -> list[Path]:
    """The ``.txt`` reviews of one part and label, sorted by name."""
    directory = folder / part / label
    with os.scandir(directory) as entries:
        names = sorted(e.name for e in entries if _is_review(e.name))
    return [directory / name for name in names]


def _wanted(name: str) -> PurePosixPath | None:
    """A review's path inside ``aclImdb/`` (``<part>/<label>/<file>.txt``), else None."""
    path = PurePosixPath(name)
    parts = path.parts
    if path.is_absolute() or ".." in parts or len(parts) != 4:
        return None
    top, part, label, file = parts
    if top != FOLDER or part not in PARTS or label not in CLASSES or not file.endswith(".txt"):
        return None
    return PurePosixPath(part, label, file)


#: the folders an extracted (or user-placed) ``aclImdb/`` must have
NEEDED = tuple(f"{part}/{label}" for part in PARTS for label in CLASSES)


def review_counts(folder: Path) -> dict[str, int] | None:
    """How many reviews each of :data:`NEEDED` holds in ``folder``; None if one is absent.

    Only names are listed (no file is opened or stat'ed): cheap even for 50,000 reviews.
    """
    if not all((folder / sub).is_dir() for sub in NEEDED):
        return None
    counts = {}
    for sub in NEEDED:
        with os.scandir(folder / sub) as entries:
            counts[sub] = sum(1 for e in entries if _is_review(e.name))
    return counts


def write_marker(folder: Path) -> None:
    """Record the review counts of a just-completed extraction in ``folder/.extracted.json``.

    The ``finish`` step of :func:`~pipelines.runtime.downloads.extract_tar`: the record is written
    before the folder is renamed into place, so it exists only where extraction completed.
    """
    (folder / MARKER).write_text(json.dumps(review_counts(folder), indent=1) + "\n")


def read_marker(folder: Path) -> dict[str, int] | None:
    """The counts :func:`write_marker` recorded in ``folder``; None if there is no (valid) one.

    A folder placed by hand has none; an unreadable record is treated the same way (the
    folder is then judged as a hand-placed one), never as an error of its own.
    """
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not all(isinstance(record.get(sub), int) for sub in NEEDED):
        return None
    return {sub: record[sub] for sub in NEEDED}


def shortfall(counts: dict[str, int], recorded: dict[str, int] | None) -> str | None:
    """Why a folder with these review ``counts`` is incomplete, as a clause; None if it is not.

    With a ``recorded`` extraction each folder must still hold what it held then (more is
    fine: reviews added by hand); without one, each must hold at least one review.
    """
    for sub in NEEDED:
        if recorded is not None and counts[sub] < recorded[sub]:
            return (
                f"{sub}/ holds {counts[sub]} of the {recorded[sub]} reviews its extraction "
                f"wrote there (recorded in {MARKER})"
            )
        if recorded is None and counts[sub] == 0:
            return f"{sub}/ holds no reviews (.txt files)"
    return None


def _warn_unless_real(folder: Path, counts: dict[str, int]) -> None:
    """A hand-placed folder is taken as it is; if it is not the real 25,000 + 25,000, say
    so, since a copy or ``tar`` cut short looks just like a deliberate subset."""
    if all(count == REAL_COUNT for count in counts.values()):
        return
    held = ", ".join(f"{sub} {count}" for sub, count in counts.items())
    log.warning(
        "%s holds %s reviews, where the real dataset has %d in each folder. Using them as "
        "they are (a subset of your own is fine); if this folder is a cut-short copy or "
        "extraction, delete it and put %s there, or set `data.download=true`.",
        folder,
        held,
        REAL_COUNT,
        ARCHIVE.filename,
    )


def extract(archive: Path, dest: Path) -> Path:
    """Extract the reviews of ``archive`` into ``dest/aclImdb``; return that folder.

    Only regular files at ``aclImdb/{train,test}/{pos,neg}/*.txt`` are written, and only
    once the whole archive has read cleanly (:func:`~pipelines.runtime.downloads.extract_tar`): a
    damaged or interrupted extraction never passes for the dataset. The folder records its
    review counts (:func:`write_marker`), so files lost from it later are noticed.
    """
    return extract_tar(
        archive, dest / FOLDER, _wanted, NEEDED, "the IMDB archive", finish=write_marker
    )


class IMDBDataModule(TextDataModule):
    """25,000 training and 25,000 test reviews, positive or negative.

    ``in_memory``/``memory_budget``: see :class:`~plugins.data.text.TextDataModule`
    (streamed, the reviews are read file by file)."""

    cache_name = "imdb"
    archive = ARCHIVE

    def __init__(
        self,
        root: str = "data_cache/imdb",
        download: bool = False,
        vectorize: VectorizeSettings | None = None,
        batch_size: BatchSize = 32,
        val_fraction: float = 0.2,
        train_limit: int | None = None,
        test_limit: int | None = None,
        seed: Seed = 0,
        cache_dir: str | None = None,
        in_memory: InMemory = "auto",
        memory_budget: int | float | str | None = None,
    ) -> None:
        """``train_limit``/``test_limit`` keep a seeded, stratified subset of that many
        reviews (the training limit applies before the validation split): quick runs."""
        super().__init__(
            vectorize=vectorize,
            batch_size=batch_size,
            val_fraction=val_fraction,
            test_fraction=0.0,
            seed=seed,
            cache_dir=cache_dir,
            in_memory=in_memory,
            memory_budget=memory_budget,
        )
        self.root = Path(root).expanduser().resolve()
        self.download = download
        self.train_limit = train_limit
        self.test_limit = test_limit
        self._folder: Path | None = None
        self._found: dict[str, tuple[list[Path], np.ndarray]] | None = None

    def folders(self) -> list[Path]:
        """Where the extracted reviews may be: ``root/aclImdb`` or root itself."""
        return [self.root / FOLDER, self.root]

    def locate(self) -> Path:
        """The ``aclImdb`` folder: found complete, extracted, or downloaded and extracted.

        An incomplete folder (see the module's docstring) is replaced by extracting the
        archive when there is one, and named in the error when there is none.
        """
        if self._folder is not None:
            return self._folder
        incomplete: tuple[Path, str] | None = None
        for folder in self.folders():
            counts = review_counts(folder)
            if counts is None:
                continue
            recorded = read_marker(folder)
            problem = shortfall(counts, recorded)
            if problem is None:
                if recorded is None:
                    _warn_unless_real(folder, counts)
                self._folder = folder
                return folder
            incomplete = incomplete or (folder, problem)
        tarball = self.root / self.archive.filename
        if self.download:
            # checked: a tarball cut short by an interrupted download is fetched again
            tarball = ensure_file(self.archive, self.root, timeout=120.0)
        elif not tarball.is_file() and incomplete is not None:
            raise self._incomplete_error(*incomplete, tarball)
        elif not tarball.is_file():
            looked = ", ".join(f"{folder}/" for folder in self.folders())
            raise DataNotFoundError(
                f"The IMDB reviews are missing: no folder with {', '.join(NEEDED)} (looked "
                f"in {looked}) and no {tarball}. Either set `data.download=true` to fetch "
                f"{tarball.name} (84 MB) into {self.root}, or put that file (or its "
                f"extracted {FOLDER}/ folder) there, or point `data.root=` at the folder "
                "that holds them."
            )
        if incomplete is not None:
            log.warning("%s is incomplete (%s): extracting %s again", *incomplete, tarball)
        folder = extract(tarball, self.root)
        self._folder = folder
        return folder

    def _incomplete_error(self, folder: Path, problem: str, tarball: Path) -> DataNotFoundError:
        """The one-paragraph error for an incomplete ``folder`` and no archive to redo it."""
        return DataNotFoundError(
            f"The IMDB reviews in {folder} are incomplete: {problem}, so an extraction or "
            f"copy was cut short or files were deleted since. Put the complete {FOLDER}/ "
            f"folder there, or put {tarball.name} in {self.root} (or set "
            "`data.download=true` to fetch it) and it is extracted again, replacing the "
            "incomplete folder."
        )

    def prepare_data(self) -> None:
        self.locate()

    def _files(self) -> dict[str, tuple[list[Path], np.ndarray]]:
        """Each part's review files (neg, then pos; sorted names) and labels."""
        if self._found is not None:
            return self._found
        folder = self.locate()
        found = {}
        for part in PARTS:
            files: list[Path] = []
            labels: list[int] = []
            for index, label in enumerate(CLASSES):
                paths = review_files(folder, part, label)
                files += paths
                labels += [index] * len(paths)
            found[part] = (files, np.asarray(labels, dtype=np.int64))
        self._found = found
        return found

    def input_files(self) -> list[Path]:
        return [path for files, _ in self._files().values() for path in files]

    def load_texts(self) -> Texts:
        data: Texts = {}
        for part, (files, labels) in self._parts().items():
            data[part] = ([read_review(path) for path in files], labels)
        self.classes = list(CLASSES)
        return data

    def stream_texts(self) -> TextStreamParts:
        parts = self._parts()
        self.classes = list(CLASSES)
        return {part: (FileTexts(files), labels) for part, (files, labels) in parts.items()}

    def count_texts(self) -> int:
        return sum(len(labels) for _, labels in self._parts().values())

    def _parts(self) -> dict[str, tuple[list[Path], np.ndarray]]:
        """Each part's review files and labels, the ``*_limit`` subsets taken."""
        parts = {}
        for part, limit in (("train", self.train_limit), ("test", self.test_limit)):
            files, labels = self._files()[part]
            if not files:
                raise DataNotFoundError(
                    f"{self.locate()}/{part}/ holds no reviews (.txt files in pos/ and neg/). "
                    "Put the extracted aclImdb/ folder there, or delete it to extract again."
                )
            index = np.arange(len(files))
            if limit and limit < len(files):
                index = limit_stratified(index, labels, limit, self.seed)
            parts[part] = ([files[i] for i in index], labels[index])
        return parts
