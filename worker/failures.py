"""What went wrong in a run, as the JSON the daemon reports (`error` on the run).

Three kinds: ``out_of_memory`` (the run's size: a run failure with the guide's remedies),
``device_error`` (the GPU or its CUDA context failed: an illegal memory access, a device-side
assert, a launch failure, an Xid, any other ``CUDA error``; the context is poisoned for every
later run, so the daemon hands the run back and exits :data:`DEVICE_EXIT` for its supervisor
to restart it), and ``exception`` (anything else, the run's own failure).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

TRACEBACK_LINES = 30
OOM_MARKERS = (
    "out of memory",
    "outofmemory",
    "cuda error: out of memory",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    # The CPU: torch's DefaultCPUAllocator when malloc fails (address space or RAM exhausted),
    # "can't allocate memory: you tried to allocate N bytes. Error code 12 (Cannot allocate
    # memory)"; "not enough memory" in its other builds.
    "can't allocate memory",
    "cannot allocate memory",
    "not enough memory",
)
#: Errors after which this process's CUDA context is unusable (checked after OOM_MARKERS).
DEVICE_MARKERS = re.compile(
    r"cuda error|cudaerror|illegal memory access|device-side assert|unspecified launch failure"
    r"|\bxid\b|cublas_status_execution_failed|cudnn_status_execution_failed"
    r"|uncorrectable ecc|misaligned address|illegal instruction",
    re.IGNORECASE,
)
#: torch's words when strict determinism meets an op with no deterministic kernel.
_NONDETERMINISTIC = re.compile(r"(\S+) does not have a deterministic implementation")
#: The exit status of a daemon whose device failed (systemd's Restart=on-failure restarts it).
DEVICE_EXIT = 3
#: Attempts a run may lose to device errors before it is reported failed (the service's
#: MAX_ATTEMPTS): a run that breaks every GPU it meets must not circulate for ever.
DEVICE_ATTEMPTS = 3


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or during, without looping."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, MemoryError, or a RuntimeError saying "out of memory"."""
    for e in _chain(exc):
        if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
            return True
        if isinstance(e, RuntimeError) and any(m in str(e).lower() for m in OOM_MARKERS):
            return True
    return False


def is_device_fatal(exc: BaseException) -> bool:
    """A CUDA error other than out of memory anywhere in the chain (see DEVICE_MARKERS)."""
    if is_out_of_memory(exc):
        return False
    return any(
        type(e).__name__ == "AcceleratorError" or DEVICE_MARKERS.search(str(e)) is not None
        for e in _chain(exc)
    )


def nondeterministic_op(exc: BaseException) -> str | None:
    """The op torch refused under strict determinism (use_deterministic_algorithms), if any."""
    for e in _chain(exc):
        found = _NONDETERMINISTIC.search(str(e))
        if found:
            return found.group(1)
    return None


def classify(exc: BaseException) -> str:
    """``out_of_memory``, ``device_error``, ``nondeterministic_op`` or ``exception``."""
    if is_out_of_memory(exc):
        return "out_of_memory"
    if is_device_fatal(exc):
        return "device_error"
    return "nondeterministic_op" if nondeterministic_op(exc) else "exception"


def remedies(doc: Mapping[str, Any] | None = None) -> list[str]:
    """The parameter guide's remedies for running out of memory, with numbers when `doc` given."""
    t = (doc or {}).get("training", {})
    m = (doc or {}).get("model", {})
    batch, accum = t.get("per_device_train_batch_size"), t.get("gradient_accumulation_steps")
    dim = m.get("model_dim")
    smaller_batch = (
        "use a smaller training.per_device_train_batch_size with more "
        "training.gradient_accumulation_steps (the same effective batch)"
    )
    if batch and accum and batch > 1:
        smaller_batch += f", e.g. {batch} x {accum} -> {batch // 2} x {accum * 2}"
    smaller_dim = "use a smaller model.model_dim"
    if dim and dim > 768:
        smaller_dim += " (e.g. 768)"
    out = []
    if not t.get("gradient_checkpointing"):
        out.append(
            "enable training.gradient_checkpointing (recomputes activations: much "
            "less memory, 20-35% slower)"
        )
    return [*out, smaller_batch, smaller_dim]


def describe_error(exc: BaseException, doc: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """{kind, type, message, traceback}, plus `remedies` when the run ran out of memory."""
    lines = "".join(traceback.format_exception(exc)).splitlines()
    described: dict[str, Any] = {
        "kind": classify(exc),
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": "\n".join(lines[-TRACEBACK_LINES:]),
    }
    if described["kind"] == "out_of_memory":
        described["remedies"] = remedies(doc)
    if described["kind"] == "nondeterministic_op":
        op = nondeterministic_op(exc)
        described["op"] = op
        described["message"] = (
            f"{op} has no deterministic implementation on this device, and the worker trains "
            f"with strict determinism (torch.use_deterministic_algorithms(True)): {exc}"
        )
    if described["kind"] == "device_error":
        described["hint"] = (
            "the GPU or its CUDA context failed, not the config: the worker hands such a run "
            f"back and restarts with a fresh CUDA context; after {DEVICE_ATTEMPTS} attempts "
            "ended this way the run is failed"
        )
    return described
