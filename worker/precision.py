"""Matrix precision on the device: TF32 for fp32 matrix products on CUDA, peak throughput, MFU.

TF32 (10-bit mantissa inputs, fp32 accumulation) is on for every CUDA run unless the document
says ``training.tf32: false`` (strict fp32). It is set at the start of each run, both ways,
because the flags are process-wide and a daemon runs many documents. The CPU has no TF32 and
its flags are never touched (its fp32 results stay bit-identical run to run).

MFU (model FLOPs utilisation, PaLM's definition) = the estimate's training FLOPs per token
(6 x the parameters a token multiplies with + attention; recomputation under gradient
checkpointing not counted) x training tokens/s / the GPU's dense peak for the precision its
matrix products ran in. Null (left out) on the CPU and on a GPU not in :data:`PEAK_TFLOPS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

#: Dense (no sparsity) peak TFLOPS per GPU: (bf16/fp16, tf32, fp32), from NVIDIA's data sheets.
#: Looked up by the first name contained in torch.cuda.get_device_name, in this order.
PEAK_TFLOPS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("H200 NVL", (835.0, 417.5, 60.0)),
    ("H200", (989.4, 494.7, 66.9)),
    ("H100 NVL", (835.0, 417.5, 60.0)),
    ("H100 PCIe", (756.0, 378.0, 51.2)),
    ("H100", (989.4, 494.7, 66.9)),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", (312.0, 156.0, 19.5)),
)


def tf32_wanted(doc: Mapping[str, Any]) -> bool:
    """training.tf32: absent, null or true mean TF32 on CUDA; false means strict fp32."""
    return doc["training"].get("tf32") is not False


def configure_tf32(device: str, allowed: bool) -> bool:
    """Set TF32 for matmuls and cuDNN on CUDA (both ways); returns whether it is on."""
    if torch.device(device).type != "cuda":
        return False
    torch.set_float32_matmul_precision("high" if allowed else "highest")
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed
    return allowed


def matmul_precision(precision: str, tf32: bool) -> str:
    """What the matrix units run: bf16 (bf16/fp16 autocast), tf32 or fp32."""
    if precision in ("bf16", "fp16"):
        return "bf16"
    return "tf32" if tf32 else "fp32"


def peak_tflops(gpu_name: str, kind: str) -> float | None:
    """The dense peak of `gpu_name` for `kind` (bf16, tf32, fp32); None when unknown."""
    column = {"bf16": 0, "tf32": 1, "fp32": 2}[kind]
    for name, peaks in PEAK_TFLOPS:
        if name.lower() in gpu_name.lower():
            return peaks[column]
    return None


def mfu(
    flops_per_token: float, tokens_per_second: float, device: str, precision: str, tf32: bool
) -> float | None:
    """Achieved / peak FLOPs on a known GPU; None on the CPU or an unknown GPU."""
    if torch.device(device).type != "cuda":
        return None
    peak = peak_tflops(torch.cuda.get_device_name(device), matmul_precision(precision, tf32))
    if peak is None:
        return None
    return flops_per_token * tokens_per_second / (peak * 1e12)
