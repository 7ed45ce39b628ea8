"""What a run needs recorded to be reproduced: the code's git commit and package versions.

Recorded as tags on every run. ``python -m pipelines.rerun`` compares them with the
machine it runs on and says what differs, since a different torch or a changed source tree
is the usual reason a re-run's numbers move.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

#: the packages whose versions decide a run's numbers
PACKAGES = ("pipelines", "torch", "torchvision", "lightning", "numpy", "mlflow", "scikit-learn")
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag: the UI shows it
GIT_DIRTY_TAG = "pipelines.git_dirty"
VERSION_TAG_PREFIX = "versions."


def provenance_tags() -> dict[str, str]:
    """Git commit (and whether the tree had uncommitted changes), Python and package versions."""
    tags = {
        f"{VERSION_TAG_PREFIX}python": platform.python_version(),
        # MLflow's own tags: the UI shows them as the run's source
        "mlflow.source.name": "pipelines",
        "mlflow.source.type": "LOCAL",
    }
    for package in PACKAGES:
        try:
            tags[f"{VERSION_TAG_PREFIX}{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    commit, dirty = _git_state(Path(__file__).resolve().parent)
    if commit:
        tags[GIT_COMMIT_TAG] = commit
        tags[GIT_DIRTY_TAG] = str(dirty).lower()
    return tags


def differences(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """Lines naming each recorded version or commit that differs from ``current``."""
    keys = sorted(
        key
        for key in recorded
        if key.startswith(VERSION_TAG_PREFIX) or key in (GIT_COMMIT_TAG, GIT_DIRTY_TAG)
    )
    return [
        f"{key}: recorded {recorded[key]}, now {current.get(key, 'absent')}"
        for key in keys
        if recorded[key] != current.get(key)
    ]


def _git_state(directory: Path) -> tuple[str | None, bool]:
    """The HEAD commit of the checkout holding ``directory`` (None outside git), and dirty."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, False
    return commit or None, bool(status.strip())
