"""Download-and-cache for dataset files: mirrors, checksums, atomic writes.

A file is written under its final name only once its checksum matches, so an interrupted
or corrupt download never masquerades as data; the next run fetches it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import DataNotFoundError

_CHUNK = 1 << 20
log = logging.getLogger(__name__)


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
