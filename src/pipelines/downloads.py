"""Download-and-cache for dataset files: mirrors, checksums, atomic writes and extraction.

A file is written under its final name only once its checksum matches, so an interrupted
or corrupt download never masquerades as data; the next run fetches it again. An archive
is extracted the same way: into a temporary folder renamed into place once it is complete.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipelines.errors import DataNotFoundError

_CHUNK = 1 << 20
log = logging.getLogger(__name__)

#: what reading a damaged or cut-short file raises deep inside a decompressor: EOFError (a
#: compressed stream ends early), zlib.error (garbled compressed data), gzip.BadGzipFile (a
#: bad header or checksum), lzma.LZMAError (garbled .xz), zipfile.BadZipFile and
#: tarfile.TarError (an archive cut short or garbled)
DAMAGED_FILE_ERRORS: tuple[type[Exception], ...] = (
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    lzma.LZMAError,
    zipfile.BadZipFile,
    tarfile.TarError,
)
#: how to replace a damaged file, for data modules that can download theirs
REFETCH = "run again with `data.download=true` to fetch it anew"


@dataclass(frozen=True)
class RemoteFile:
    """A file known by name, where to fetch it, and the checksum that proves it is intact."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_ok(path: Path, remote: RemoteFile) -> bool:
    """True if ``path`` matches every checksum ``remote`` declares (or it declares none)."""
    if remote.sha256 and file_digest(path, "sha256") != remote.sha256:
        return False
    return not (remote.md5 and file_digest(path, "md5") != remote.md5)


def download(remote: RemoteFile, dest_dir: Path, timeout: float = 30.0) -> Path:
    """Fetch ``remote`` into ``dest_dir``, trying each mirror until one passes the checksum."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / remote.filename
    failures: list[str] = []
    for url in remote.urls:
        handle, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{remote.filename}.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                for chunk in iter(lambda r=r: r.read(_CHUNK), b""):
                    out.write(chunk)
            if not checksum_ok(tmp, remote):
                failures.append(f"{url}: checksum mismatch")
                continue
            os.replace(tmp, target)
            return target
        except OSError as exc:  # URLError, HTTPError and socket timeouts are OSErrors
            failures.append(f"{url}: {exc}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataNotFoundError(
        f"Could not download {remote.filename} ({'; '.join(failures)}). Check the network, "
        f"or download the file by hand and place it in {dest_dir}."
    )


def ensure_file(remote: RemoteFile, dest_dir: Path, timeout: float = 30.0) -> Path:
    """The cached ``remote`` in ``dest_dir`` if its checksum holds, else a fresh download.

    A file cut short by a killed download (or damaged since) fails the checksum and is
    fetched again instead of failing later, deep inside a decompressor.
    """
    target = dest_dir / remote.filename
    if target.is_file():
        if checksum_ok(target, remote):
            return target
        log.warning("%s fails its checksum (a cut-short download?): fetching it again", target)
    return download(remote, dest_dir, timeout=timeout)


def damaged_file_error(
    path: Path, error: BaseException, refetch: str = REFETCH
) -> DataNotFoundError:
    """The one-paragraph error for a damaged ``path``: which file, what broke, the fix."""
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return DataNotFoundError(
        f"{path} is damaged or cut short ({name}: {error}). Delete it and {refetch}."
    )


@contextmanager
def reading_data_file(path: Path, refetch: str = REFETCH) -> Iterator[None]:
    """Turn what a damaged compressed ``path`` raises into :func:`damaged_file_error`.

    A ``zlib.error`` or ``EOFError`` traceback from inside gzip or tarfile names neither the
    file nor the fix; ``refetch`` says how to get an intact copy (a module that cannot
    download its files says where to put one instead).
    """
    try:
        yield
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_file_error(path, exc, refetch) from exc


def extract_tar(
    archive: Path,
    target: Path,
    select: Callable[[str], PurePosixPath | None],
    required: Sequence[str],
    what: str,
) -> Path:
    """Extract the files ``select`` picks from ``archive`` into the folder ``target``.

    ``select`` maps a member's name to its path inside ``target`` (None: skip it). Only
    regular files are written, under relative paths without ``..``, so an archive cannot
    write outside ``target`` (no absolute paths, links or devices are honoured).

    The files go into a temporary sibling of ``target``, renamed into place only once the
    whole archive has been read cleanly and holds every path in ``required`` (``what``
    names the archive expected, for the error if it does not): a damaged, truncated or
    killed extraction leaves nothing a later run would take for the data. A ``target``
    already there is replaced: callers extract only when theirs is incomplete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    folder = staging / target.name  # made by mkdir below, so with the usual permissions
    try:
        with reading_data_file(archive), tarfile.open(archive, "r:*") as tar:
            for member in tar:
                path = select(member.name)
                if path is None or not member.isfile():
                    continue
                if path.is_absolute() or ".." in path.parts or not path.parts:
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                out = folder.joinpath(*path.parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with source, open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink, _CHUNK)
            _read_to_end(tar)
        missing = [name for name in required if not (folder / name).exists()]
        if missing:
            raise DataNotFoundError(
                f"{archive} lacks {target.name}/{missing[0]}: it is not {what}. "
                f"Delete it and {REFETCH}."
            )
        if target.exists() or target.is_symlink():
            os.replace(target, staging / f"{target.name}.replaced")  # removed with staging
        os.replace(folder, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _read_to_end(tar: tarfile.TarFile) -> None:
    """Read the rest of ``tar``'s stream; raise ``tarfile.ReadError`` if it was cut short.

    ``tarfile`` stops iterating without complaint where a tar is cut at a member boundary,
    and never reads a gzip stream to its end, where the checksum that reveals garbled data
    is kept. Reading to the end makes gzip check it; a stream that then ends before one
    full block past the last member (the end-of-archive marker) was cut short.
    """
    fileobj = tar.fileobj
    assert fileobj is not None  # an open archive has one
    while fileobj.read(_CHUNK):
        pass
    end = getattr(tar, "offset", None)  # where the last member ends (tarfile's own field)
    if end is not None and fileobj.tell() < end + tarfile.BLOCKSIZE:
        raise tarfile.ReadError("it stops before its end-of-archive marker")
