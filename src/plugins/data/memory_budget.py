"""The memory budget that chooses between a dataset decoded into memory and one streamed
from disk (``data.in_memory: auto|true|false``, ``data.memory_budget``), shared by every data
plugin that can stream."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from pipelines.api import ConfigValueError

#: ``data.in_memory``: ``auto`` (the budget chooses), ``true`` or ``false``
InMemory = Literal["auto"] | bool

#: ``data.memory_budget: null``: this fraction of the memory available when the run starts
DEFAULT_BUDGET_FRACTION = 0.25
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def available_memory() -> int:
    """Bytes of memory this process may still take: the kernel's MemAvailable (free plus
    reclaimable cache), lowered to what a cgroup (container) limit leaves."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit.isdigit():
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return int(available)


def memory_budget_bytes(value: Any, available: int | None = None) -> tuple[int, str]:
    """``data.memory_budget`` in bytes, and how it was set, in words.

    None: a quarter of the available memory; a float in (0, 1]: that fraction of it; a
    whole number of bytes (an int, or a string such as ``"500MB"``, ``"2GiB"``)."""
    budget = None
    if value is None:
        fraction = DEFAULT_BUDGET_FRACTION
    elif isinstance(value, bool):
        fraction = None
    elif isinstance(value, float) and 0 < value <= 1:
        fraction = value
    else:
        fraction = None
        budget = _bytes(value)
    if fraction is not None:
        available = available_memory() if available is None else available
        return int(available * fraction), (
            f"{fraction:g} of the {format_bytes(available)} available"
        )
    if budget is None or budget < 1:
        raise ConfigValueError(
            f"data.memory_budget must be a number of bytes (e.g. `data.memory_budget=2GB`, "
            f"`500MB` or `1000000`), a fraction of the available memory in (0, 1] (e.g. "
            f"`data.memory_budget=0.5`), or null for {DEFAULT_BUDGET_FRACTION:g} of it; got "
            f"{value!r}. Data whose decoded size is above the budget is streamed from disk "
            "(`data.in_memory=auto`)."
        )
    return budget, format_bytes(budget)


def _bytes(value: Any) -> int | None:
    """A whole number of bytes from an int, a whole float (``1e9``) or ``"<n><unit>"``."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value == int(value) else None
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", value, re.IGNORECASE)
        if match:
            return int(float(match[1]) * _UNITS[(match[2] or "").lower()])
    return None


def format_bytes(count: float) -> str:
    """``59 MB``, ``1.2 GB``: decimal units, as a person reads them."""
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} TB"


def default_workers() -> int:
    """``data.num_workers: null``: up to 4 decoding processes, one per core."""
    return min(4, os.cpu_count() or 1)


def check_in_memory(value: Any, kept: str) -> InMemory:
    """``data.in_memory`` checked; ``kept`` says what the in-memory path does with the data
    ("decodes the images into memory")."""
    if value not in ("auto", True, False):
        raise ConfigValueError(
            f"data.in_memory must be auto, true or false, got {value!r}: auto {kept} when it "
            "fits data.memory_budget, else streams it from disk."
        )
    return value


def choose_data_path(
    in_memory: InMemory,
    budget: tuple[int, str],
    size: Callable[[], tuple[int, str]],
    *,
    log: logging.Logger,
    plugin: str,
    kept: str,
    streamed: str,
) -> str:
    """``"in_memory"`` or ``"streamed"`` (a data plugin's ``data_path``), said in one log line
    with the reason: ``data.in_memory`` where it is true or false, else the decoded size
    against the budget (:func:`memory_budget_bytes`). ``size`` gives the bytes and what
    they are in words ("60 images decoded"), asked only under ``auto``; ``kept`` and
    ``streamed`` end the line for either path ("decoding into memory")."""
    if in_memory != "auto":
        why, fits = f"data.in_memory={str(in_memory).lower()}", bool(in_memory)
    else:
        needed, what = size()
        fits = needed <= budget[0]
        why = (
            f"{what} would take {format_bytes(needed)}, {'within' if fits else 'above'} "
            f"data.memory_budget {budget[1]}"
        )
    log.info("%s: %s: %s", plugin, why, kept if fits else streamed)
    return "in_memory" if fits else "streamed"


def count_stream_lines(stream: IO[bytes]) -> int:
    """Lines of a binary ``stream`` (its ``\\n`` bytes, and a last line without one), read
    in blocks at disk speed: how many texts or rows a file holds, before it is parsed."""
    lines, last = 0, b"\n"
    while block := stream.read(1 << 20):
        lines += block.count(b"\n")
        last = block[-1:]
    return lines + (last != b"\n")
