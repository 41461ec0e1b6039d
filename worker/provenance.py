"""What makes a run reproducible: the code, library versions, device, data hash and seed."""

from __future__ import annotations

import logging
import platform
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

GIT_TIMEOUT_S = 5.0
PACKAGE = "config-registry"
SOURCE_DIR = Path(__file__).resolve().parent


def _version(distribution: str) -> str:
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


def _mlflow_version() -> str:
    full = _version("mlflow")
    return full if full != "unknown" else _version("mlflow-skinny")


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """The package version, the checkout's git commit ("unknown" outside git) and dirtiness."""
    version = _version(PACKAGE)
    if version == "unknown":
        from registry import __version__ as version
    commit = _git("rev-parse", "HEAD") or "unknown"
    status = _git("status", "--porcelain", "--untracked-files=no") if commit != "unknown" else None
    dirty = None if status is None else bool(status)
    label = version if commit == "unknown" else f"{version}+g{commit[:12]}"
    if dirty:
        label += ".dirty"
    return {"code_version": label, "git_commit": commit, "git_dirty": dirty}


def device_name(device: str) -> str:
    """ "cpu", or e.g. "cuda:0 NVIDIA H200"."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return dev.type
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def effective_precision(precision: str, device: str) -> str:
    """What autocast really runs: fp16 becomes bf16 on the CPU (see worker.training)."""
    return "bf16" if precision == "fp16" and torch.device(device).type == "cpu" else precision


def collect(doc: Mapping[str, Any], dataset_sha256: str, device: str, seed: int) -> dict[str, Any]:
    """The provenance recorded on the run and stored as the MLflow artifact provenance.json."""
    import numpy
    import tokenizers
    import transformers

    from registry.spec import config_hash

    return {
        "seed": seed,
        "config_hash": config_hash(dict(doc)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "mlflow": _mlflow_version(),
        "tokenizers": tokenizers.__version__,
        "numpy": numpy.__version__,
        "device": device_name(device),
        "cuda": torch.version.cuda,
        "platform": platform.platform(),
        "dataset": doc["data"]["dataset"],
        "dataset_sha256": dataset_sha256,
        "tokenizer": doc["data"]["tokenizer"],
        "precision": doc["training"]["precision"],
        "precision_effective": effective_precision(doc["training"]["precision"], device),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        **code_version(),
    }
