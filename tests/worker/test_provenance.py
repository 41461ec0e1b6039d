"""Provenance is honest: strict determinism only when it was on, what attention ran, and on a
GPU the GPU, driver, CUDA, cuDNN and TF32 (CONTRACT 5.7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.support.worker import tiny_doc
from worker import provenance
from worker.model import build_model
from worker.training import seed_everything

# /proc/driver/nvidia/version of the proprietary and of the open kernel module.
PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  "
    "(dvs-builder@U16-I3-B07-4-1)  Thu Jan 23 22:50:55 UTC 2025\n"
)


@pytest.fixture
def determinism() -> Iterator[None]:
    """Leave torch's process-wide determinism setting as the test found it."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    benchmark = torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.benchmark = benchmark


def test_deterministic_only_under_strict_determinism(
    determinism: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_everything(1, "cpu")  # what every run does
    assert provenance.strictly_deterministic("cpu") is True
    torch.use_deterministic_algorithms(True, warn_only=True)  # warnings only: not deterministic
    assert provenance.strictly_deterministic("cpu") is False
    torch.use_deterministic_algorithms(False)
    assert provenance.strictly_deterministic("cpu") is False
    # On CUDA it also takes a fixed cuBLAS workspace and no cuDNN benchmarking.
    torch.use_deterministic_algorithms(True)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert provenance.strictly_deterministic("cuda:0") is False
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    assert provenance.strictly_deterministic("cuda:0") is True
    torch.backends.cudnn.benchmark = True
    assert provenance.strictly_deterministic("cuda:0") is False


def test_the_driver_version_from_the_kernel_modules_file() -> None:
    assert provenance.driver_from_proc(PROPRIETARY) == "550.54.15"
    assert provenance.driver_from_proc(OPEN) == "570.86.15"
    assert provenance.driver_from_proc("") is None


def test_the_attention_implementation_is_read_from_the_built_model(determinism: None) -> None:
    model = build_model(tiny_doc(model={"architecture": "llama"}))
    found = provenance.runtime("cpu", model)
    assert found["attention_implementation"] == model.config._attn_implementation
    assert found["attention_implementation"] in ("sdpa", "eager")
    assert "tf32" not in found and provenance.gpu("cpu") == {}


@pytest.mark.slow
def test_a_cpu_run_records_the_keys_of_every_run(trained: dict[str, Any]) -> None:
    prov = trained["result"].provenance
    assert prov["deterministic"] is True
    assert prov["attention_implementation"] in ("sdpa", "eager")
    assert prov["cuda"] == torch.version.cuda
    gpu_only = {"gpu_name", "compute_capability", "cudnn", "driver", "tf32"}
    assert not gpu_only & prov.keys()  # a CPU run claims no GPU
    stored = MlflowClient(trained["uri"]).download_artifacts(
        trained["result"].mlflow_run_id, "provenance.json"
    )
    assert json.loads(Path(stored).read_text()) == prov  # rewritten when the run ended
