"""Files written whole or not at all, so a crash never leaves a half-written cache behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_torch_save(payload: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place.

    The file is made world-readable (``mkstemp`` makes it private): caches are shared.
    """
    import torch

    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
