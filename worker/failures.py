"""What went wrong in a run, as the JSON the daemon reports (`error` on the run)."""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from typing import Any

TRACEBACK_LINES = 30
OOM_MARKERS = ("out of memory", "outofmemory", "cuda error: out of memory")


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
        "kind": "out_of_memory" if is_out_of_memory(exc) else "exception",
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": "\n".join(lines[-TRACEBACK_LINES:]),
    }
    if described["kind"] == "out_of_memory":
        described["remedies"] = remedies(doc)
    return described
