"""The version of the code that runs: the package version and the checkout's git commit."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 5.0
PACKAGE = "config-registry"
SOURCE_DIR = Path(__file__).resolve().parent


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution``, or "unknown"."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=SOURCE_DIR,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """The package version, the checkout's git commit ("unknown" outside git) and dirtiness."""
    version = distribution_version(PACKAGE)
    if version == "unknown":
        from registry import __version__ as version
    commit = _git("rev-parse", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no") if commit != "unknown" else None
    dirty = None if status is None else bool(status)
    label = version if commit == "unknown" else f"{version}+g{commit[:12]}"
    if dirty:
        label += ".dirty"
    return {"code_version": label, "git_commit": commit, "git_dirty": dirty}


def is_exact(info: dict[str, Any]) -> bool:
    """True when the label pins the code: a known commit with no local changes."""
    return info.get("git_commit") not in (None, "unknown") and info.get("git_dirty") is False
