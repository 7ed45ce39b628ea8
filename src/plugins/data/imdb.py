"""The IMDB movie reviews (Maas et al. 2011; book ch. 3/4 and 11) from ``aclImdb_v1.tar.gz``.

``data.root`` holds the extracted ``aclImdb/`` folder (or is that folder), else the archive,
which is extracted; ``data.download=true`` fetches the archive (checked by md5) when neither
is there. The layout is ``aclImdb/{train,test}/{pos,neg}/*.txt`` (12,500 reviews in each);
``unsup/`` is ignored. The validation split is a seeded, stratified ``val_fraction`` of
train (the book: 20%, 20,000 / 5,000). Reviews are raw text (``<br />`` tags included);
the vectorizer standardizes them.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np

from pipelines.downloads import RemoteFile, ensure_file, extract_tar
from pipelines.errors import DataNotFoundError
from plugins.data.text import TextDataModule, Texts
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


def review_files(folder: Path, part: str, label: str) -> list[Path]:
    """The ``.txt`` reviews of one part and label, sorted by name."""
    directory = folder / part / label
    with os.scandir(directory) as entries:
        names = sorted(
            e.name for e in entries if e.name.endswith(".txt") and not e.name.startswith(".")
        )
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


def extract(archive: Path, dest: Path) -> Path:
    """Extract the reviews of ``archive`` into ``dest/aclImdb``; return that folder.

    Only regular files at ``aclImdb/{train,test}/{pos,neg}/*.txt`` are written, and only
    once the whole archive has read cleanly (:func:`~pipelines.downloads.extract_tar`): a
    damaged or interrupted extraction never passes for the dataset.
    """
    return extract_tar(archive, dest / FOLDER, _wanted, NEEDED, "the IMDB archive")


class IMDBDataModule(TextDataModule):
    """25,000 training and 25,000 test reviews, positive or negative."""

    cache_name = "imdb"
    archive = ARCHIVE

    def __init__(
        self,
        root: str = "data_cache/imdb",
        download: bool = False,
        vectorize: VectorizeSettings | None = None,
        batch_size: int = 32,
        val_fraction: float = 0.2,
        train_limit: int | None = None,
        test_limit: int | None = None,
        seed: int = 0,
        cache_dir: str | None = None,
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
        """The ``aclImdb`` folder: found, extracted, or downloaded and extracted."""
        if self._folder is not None:
            return self._folder
        for folder in self.folders():
            if all((folder / sub).is_dir() for sub in NEEDED):
                self._folder = folder
                return folder
        tarball = self.root / self.archive.filename
        if self.download:
            # checked: a tarball cut short by an interrupted download is fetched again
            tarball = ensure_file(self.archive, self.root, timeout=120.0)
        elif not tarball.is_file():
            looked = ", ".join(f"{folder}/" for folder in self.folders())
            raise DataNotFoundError(
                f"The IMDB reviews are missing: no folder with {', '.join(NEEDED)} (looked "
                f"in {looked}) and no {tarball}. Either set `data.download=true` to fetch "
                f"{tarball.name} (84 MB) into {self.root}, or put that file (or its "
                f"extracted {FOLDER}/ folder) there, or point `data.root=` at the folder "
                "that holds them."
            )
        folder = extract(tarball, self.root)
        self._folder = folder
        return folder

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
            texts = [files[i].read_text(encoding="utf-8", errors="replace") for i in index]
            data[part] = (texts, labels[index])
        self.classes = list(CLASSES)
        return data
