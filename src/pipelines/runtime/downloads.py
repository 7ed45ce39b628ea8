"""Download-and-cache for dataset files: mirrors, checksums, atomic writes and extraction.

A file is written under its final name only once its checksum matches, so an interrupted
or corrupt download never masquerades as data; the next run fetches it again. An archive
is extracted the same way: into a temporary folder renamed into place once it is complete;
the temporary folder of an extraction that was killed is removed by the next one.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import time
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
#: what ``bz2`` raises for garbled data (or a file that is not bz2 at all): a plain OSError
#: with this message and no errno, unlike the PermissionError or EIO a disk raises
BZ2_DATA_ERROR = "Invalid data stream"
#: how to replace a damaged file, for data modules that can download theirs
REFETCH = "run again with `data.download=true` to fetch it anew"
#: the file an extraction holds an exclusive ``flock`` on, inside its staging folder, while
#: it runs: the system drops the lock when the process dies (SIGKILL included), so a staging
#: folder whose lock can be taken was abandoned and may be removed
STAGING_LOCK = ".extracting.lock"
#: a staging folder with no lock to test (left by a version without one, or where locks are
#: unavailable) is taken as abandoned once untouched this long: no extraction runs that long
LOCKLESS_STAGING_AGE_S = 3600.0


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


def unreadable_file_error(path: Path, setting: str) -> DataNotFoundError:
    """The one-paragraph error for a ``path`` this user may not read (permission denied).

    The file is fine, so the damaged-file advice (delete it, fetch it anew) would destroy
    good data: the fix is its permissions -- or those of a folder above it, which deny the
    same way -- or another file, given by ``setting`` (``data.path``, ``data.root``...).
    """
    return DataNotFoundError(
        f"Cannot read {path}: permission denied. Give this user read access (chmod) to it "
        f"and to the folders above it, or point `{setting}=` elsewhere."
    )


def folder_given_error(path: Path, setting: str, expected: str) -> DataNotFoundError:
    """The one-paragraph error for a folder given where ``setting`` needs a file.

    ``is_file()`` is False for a folder as for a missing path, and "does not exist" sends
    the user looking for a typo in a path that is there; ``expected`` says what file to give.
    """
    return DataNotFoundError(
        f"{path} is a folder; `{setting}` must be a file ({expected}). Point `{setting}=` at "
        "the file itself (e.g. one inside that folder)."
    )


def file_already_there(path: Path, setting: str, expected: str) -> bool:
    """Whether the file ``setting`` names is there to use, before a download would fetch it.

    A folder in its place is refused (:func:`folder_given_error`): the download could only
    fail to replace it. A path that cannot be examined is refused as unreadable.
    """
    with reading_data_file(path, setting=setting):  # is_file() may be denied too
        if path.is_file():
            return True
        if path.is_dir():
            raise folder_given_error(path, setting, expected)
    return False


@contextmanager
def reading_data_file(
    path: Path, refetch: str = REFETCH, setting: str | None = None
) -> Iterator[None]:
    """Turn what a damaged compressed ``path`` raises into :func:`damaged_file_error`.

    A ``zlib.error`` or ``EOFError`` traceback from inside gzip or tarfile names neither the
    file nor the fix; ``refetch`` says how to get an intact copy (a module that cannot
    download its files says where to put one instead). With ``setting`` (the config key
    that names ``path``), a PermissionError becomes :func:`unreadable_file_error`, which
    names that key as the alternative; without it a PermissionError stays itself, for the
    caller to word (it alone knows which setting gave the file).
    """
    try:
        yield
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_file_error(path, exc, refetch) from exc
    except PermissionError as exc:
        if setting is None:
            raise
        raise unreadable_file_error(path, setting) from exc
    except OSError as exc:  # only bz2's garbled data: a disk's errors stay themselves
        if not is_bz2_data_error(exc):
            raise
        raise damaged_file_error(path, exc, refetch) from exc


def is_bz2_data_error(error: BaseException) -> bool:
    """True for what ``bz2`` raises on garbled data: a bare ``OSError("Invalid data stream")``.

    It cannot join :data:`DAMAGED_FILE_ERRORS`, a tuple of types, since every OSError
    (PermissionError, a failing disk) would then read as a damaged file; only the exact
    type, message and missing errno that CPython's ``_bz2`` module uses are matched.
    """
    return type(error) is OSError and error.errno is None and error.args == (BZ2_DATA_ERROR,)


def extract_tar(
    archive: Path,
    target: Path,
    select: Callable[[str], PurePosixPath | None],
    required: Sequence[str],
    what: str,
    finish: Callable[[Path], None] | None = None,
) -> Path:
    """Extract the files ``select`` picks from ``archive`` into the folder ``target``.

    ``select`` maps a member's name to its path inside ``target`` (None: skip it). Only
    regular files are written, under relative paths without ``..``, so an archive cannot
    write outside ``target`` (no absolute paths, links or devices are honoured).

    The files go into a temporary sibling of ``target``, renamed into place only once the
    whole archive has been read cleanly and holds every path in ``required`` (``what``
    names the archive expected, for the error if it does not): a damaged, truncated or
    killed extraction leaves nothing a later run would take for the data. A ``target``
    already there is replaced: callers extract only when theirs is incomplete. ``finish``
    is called with the complete folder before it is renamed into place (e.g. to record
    what it holds), so what it writes is there exactly when the extraction completed.

    A process killed mid-extraction (SIGKILL, power loss) cannot remove its staging folder;
    the next extraction into ``target`` does (:func:`remove_stale_staging`).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    with _staging_folder(target) as staging:
        folder = staging / target.name  # made by mkdir below, so with the usual permissions
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
        if finish is not None:
            finish(folder)
        if target.exists() or target.is_symlink():
            os.replace(target, staging / f"{target.name}.replaced")  # removed with staging
        os.replace(folder, target)
    return target


@contextmanager
def _staging_folder(target: Path) -> Iterator[Path]:
    """A new hidden sibling of ``target`` to extract into, locked while in use, then removed.

    The lock (:data:`STAGING_LOCK`) is what tells a later run's :func:`remove_stale_staging`
    that this folder's process is still alive; it is released only after the folder is gone.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    lock = open(staging / STAGING_LOCK, "w")  # noqa: SIM115 - held for the whole block
    try:
        _lock(lock.fileno())
        yield staging
    finally:
        try:
            shutil.rmtree(staging, ignore_errors=True)
        finally:
            lock.close()  # releases the lock
        if staging.exists():  # where an open file cannot be removed (Windows)
            shutil.rmtree(staging, ignore_errors=True)


def _lock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` on ``fd`` without waiting: True if taken, False if
    another process holds it, None where that cannot be told (no ``flock`` on Windows, or a
    file system without locks): staging folders are then judged by age alone."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK on a network file system without a lock service
        return None
    return True


def staging_pattern(target: Path) -> re.Pattern[str]:
    """The names :func:`extract_tar` gives ``target``'s staging folders: ``tempfile.mkdtemp``
    with the prefix ``.<name>.`` and 8 random characters of ``[a-z0-9_]``, nothing else."""
    return re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}")


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove the staging folders of extractions into ``target`` whose process has died.

    A killed extraction leaves a hidden ``.<name>.xxxxxxxx`` folder beside ``target``, as
    big as what it had extracted, forever. Only folders that are unmistakably such
    leftovers are removed: named by :func:`staging_pattern`, holding nothing but what an
    extraction puts there, and abandoned (:func:`_abandoned`): a running extraction's
    folder, or a user's folder of a similar name, is left alone. Returns what was removed.
    """
    pattern = staging_pattern(target)
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(target.parent) if pattern.fullmatch(e.name)]
    except OSError:  # an unreadable parent: mkdtemp there will say so
        return removed
    for entry in entries:
        folder = Path(entry.path)
        if entry.is_dir(follow_symlinks=False) and _abandoned(folder, target.name):
            shutil.rmtree(folder, ignore_errors=True)
            log.warning("removed %s, left by an extraction that was killed", folder)
            removed.append(folder)
    return removed


def _abandoned(folder: Path, name: str) -> bool:
    """Whether ``folder`` is a staging folder of ``name`` whose extraction is not running.

    It must hold only what :func:`extract_tar` puts there (its lock, ``name`` and
    ``name.replaced``). A lock that can be taken at once means its process is gone; without
    a lock to test (a version that wrote none, a process killed between creating the folder
    and its lock, or no ``flock`` here) it must be untouched for :data:`LOCKLESS_STAGING_AGE_S`.
    """
    try:
        contents = set(os.listdir(folder))
        if not contents <= {STAGING_LOCK, name, f"{name}.replaced"}:
            return False
        if STAGING_LOCK in contents:
            fd = os.open(folder / STAGING_LOCK, os.O_RDWR)  # a write lock needs it on NFS
            try:
                taken = _lock(fd)
            finally:
                os.close(fd)  # releases a lock just taken
            if taken is not None:
                return taken
        return time.time() - folder.stat().st_mtime >= LOCKLESS_STAGING_AGE_S
    except OSError:  # gone meanwhile (its extraction finished), or not ours to open
        return False


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
