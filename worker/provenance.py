"""What makes a run reproducible: the code, library versions, device, data hash and seed."""

from __future__ import annotations

import logging
import platform
from collections.abc import Mapping
from typing import Any

import torch

from registry.document.codeversion import code_version, distribution_version

log = logging.getLogger(__name__)


def _version(distribution: str) -> str:
    return distribution_version(distribution)


def _mlflow_version() -> str:
    full = _version("mlflow")
    return full if full != "unknown" else _version("mlflow-skinny")


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

    from registry.document.spec import config_hash

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
