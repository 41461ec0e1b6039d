"""What makes a run reproducible: the code, library versions, device, data hash and seed.

Every run records ``attention_implementation`` (what transformers ran: ``sdpa``, ``eager``,
...; None until a model is built) and ``deterministic`` (True only under strict determinism:
``torch.use_deterministic_algorithms(True)`` without ``warn_only``, no cuDNN benchmarking, and
on CUDA a fixed cuBLAS workspace). A GPU run also records ``gpu_name``,
``compute_capability``, ``cudnn``, ``driver`` and ``tf32`` (CONTRACT 5.7). A fine-tune also
records ``from_run``, ``from_mlflow_run_id`` and ``from_weights_sha256``, the parent it started
from (:mod:`worker.finetune`, added once its checkpoint is downloaded).
"""

from __future__ import annotations

import logging
import os
import platform
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
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


def strictly_deterministic(device: str) -> bool:
    """True when the kernels torch picks are deterministic for certain, not merely asked to be."""
    strict = (
        torch.are_deterministic_algorithms_enabled()
        and not torch.is_deterministic_algorithms_warn_only_enabled()
    )
    if torch.device(device).type != "cuda":
        return strict
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    return strict and not torch.backends.cudnn.benchmark and workspace in (":4096:8", ":16:8")


_NVIDIA_VERSION = Path("/proc/driver/nvidia/version")
_KERNEL_MODULE = re.compile(r"Kernel Module(?: for \S+)?\s+([0-9][0-9.]*)")


def driver_from_proc(text: str) -> str | None:
    """The driver version in the text of /proc/driver/nvidia/version (Linux)."""
    found = _KERNEL_MODULE.search(text)
    return found.group(1) if found else None


def driver_version() -> str | None:
    """The NVIDIA driver: from pynvml when installed, else /proc/driver/nvidia/version; None
    when neither answers (torch itself does not report the driver)."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # not installed, or no NVML library: try the kernel module's file
        pass
    try:
        return driver_from_proc(_NVIDIA_VERSION.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        log.info("NVIDIA driver version unknown: no pynvml and no %s", _NVIDIA_VERSION)
        return None


def gpu(device: str) -> dict[str, Any]:
    """The GPU keys of the provenance; ``{}`` off CUDA."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return {}
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return {
        "gpu_name": torch.cuda.get_device_name(index),
        "compute_capability": f"{major}.{minor}",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "driver": driver_version(),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }


def runtime(device: str, model: Any = None) -> dict[str, Any]:
    """What the run really ran with, read when it ran: determinism, TF32, attention."""
    found: dict[str, Any] = {"deterministic": strictly_deterministic(device)}
    if torch.device(device).type == "cuda":
        found["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    if model is not None:
        config = getattr(model, "config", None)
        found["attention_implementation"] = getattr(config, "_attn_implementation", None)
    return found


def note(provenance: MutableMapping[str, Any], device: str, model: Any = None) -> None:
    """Update ``provenance`` with :func:`runtime` (after the model is built, and at the end)."""
    provenance.update(runtime(device, model))


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
        "attention_implementation": None,
        "deterministic": strictly_deterministic(device),
        **gpu(device),
        **code_version(),
    }
