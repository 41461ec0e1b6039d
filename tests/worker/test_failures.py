"""What a failure is: out of memory (a run failure with remedies), a device error (the daemon
hands the run back and exits), an op strict determinism refuses, or the run's own error."""

from __future__ import annotations

import pytest
import torch

from worker.failures import classify, describe_error, is_device_fatal

# The texts torch and CUDA really produce (c10/cuda/CUDAException, cuBLAS, NVML Xid reports).
KERNEL_HINT = (
    "\nCUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1"
    "\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)
TABLE = [
    ("CUDA error: an illegal memory access was encountered" + KERNEL_HINT, "device_error"),
    ("CUDA error: device-side assert triggered" + KERNEL_HINT, "device_error"),
    ("CUDA error: unspecified launch failure" + KERNEL_HINT, "device_error"),
    ("CUDA error: misaligned address" + KERNEL_HINT, "device_error"),
    ("CUDA error: uncorrectable ECC error encountered" + KERNEL_HINT, "device_error"),
    ("NVRM: Xid (PCI:0000:18:00): 79, GPU has fallen off the bus.", "device_error"),
    (
        "CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, "
        "opb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc)`",
        "device_error",
    ),
    ("CUDA error: out of memory" + KERNEL_HINT, "out_of_memory"),
    (
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "139.72 GiB of which 1.12 GiB is free.",
        "out_of_memory",
    ),
    (
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "out_of_memory",
    ),
    (  # the CPU's out of memory (a capped address space or RAM): remedies apply there too
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 180355072 bytes. Error code 12 (Cannot allocate memory)",
        "out_of_memory",
    ),
    (
        "index_add_cuda_ does not have a deterministic implementation, but you set "
        "'torch.use_deterministic_algorithms(True)'. You can turn off determinism just for "
        "this operation, or you can use the 'warn_only=True' option, if that's acceptable for "
        "your application.",
        "nondeterministic_op",
    ),
    ("mat1 and mat2 shapes cannot be multiplied (4x64 and 32x64)", "exception"),
]


@pytest.mark.parametrize(("message", "kind"), TABLE)
def test_classification_table(message: str, kind: str) -> None:
    assert classify(RuntimeError(message)) == kind
    assert describe_error(RuntimeError(message))["kind"] == kind


def test_torch_exception_types_decide_too() -> None:
    assert classify(torch.OutOfMemoryError("CUDA out of memory.")) == "out_of_memory"
    assert classify(torch.AcceleratorError("an unlisted CUDA failure")) == "device_error"
    assert classify(MemoryError()) == "out_of_memory"
    # An error raised while handling a device error is one too.
    try:
        try:
            raise RuntimeError("CUDA error: device-side assert triggered")
        except RuntimeError as first:
            raise ValueError("saving the checkpoint failed") from first
    except ValueError as second:
        assert is_device_fatal(second)


def test_descriptions_say_what_to_do() -> None:
    oom = describe_error(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED"))
    assert any("gradient_checkpointing" in r for r in oom["remedies"])
    device = describe_error(RuntimeError("CUDA error: an illegal memory access"))
    assert "not the config" in device["hint"] and "remedies" not in device
    op = describe_error(RuntimeError(TABLE[-2][0]))
    assert op["op"] == "index_add_cuda_"
    assert op["message"].startswith("index_add_cuda_ has no deterministic implementation")
