"""Whether a re-run made by ``reproduce`` reproduced its original, and how closely.

"Identical" is said only when both runs ran in the same environment, the same device class
(``cpu``, or ``cuda`` on the same ``gpu_name``) and the same ``torch``, ``transformers`` and
``cuda`` (:data:`ENVIRONMENT_KEYS`, read from each run's provenance), and every model metric
is equal bit for bit. Elsewhere floating-point sums are ordered differently, so equality is
not expected: the result then names the differences and checks each model metric against the
stated tolerance, ``|rerun - original| <= max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE *
|original|)``. Timing and memory metrics get a delta but decide nothing: they measure the
machine.
"""

from __future__ import annotations

import re
from typing import Any

from registry.document.canonical import flatten

#: What must match for bit-identical metrics to be expected.
ENVIRONMENT_KEYS = ("device_class", "gpu_name", "torch", "transformers", "cuda")
#: A re-run elsewhere reproduces when each model metric is within 1% of the original's ...
RELATIVE_TOLERANCE = 0.01
#: ... or within this of it (a metric near zero).
ABSOLUTE_TOLERANCE = 1e-6

# Measurements of the machine, not of the model.
_TIMING_METRIC = re.compile(
    r"per_second|per_sec|_seconds?$|_time$|duration|throughput|memory", re.I
)


def is_model_metric(key: str) -> bool:
    """False for timing and memory metrics (tokens_per_second, peak_memory_mb, ...)."""
    return _TIMING_METRIC.search(key) is None


def device_class(provenance: dict[str, Any]) -> str | None:
    """``cpu`` or ``cuda`` (the GPU model is ``gpu_name``), from provenance ``device``."""
    device = provenance.get("device")
    if not isinstance(device, str) or not device:
        return None
    return re.split(r"[:\s]", device, maxsplit=1)[0]


def environment(provenance: dict[str, Any] | None) -> dict[str, Any]:
    """The :data:`ENVIRONMENT_KEYS` of one run's provenance (None where not recorded)."""
    prov = provenance or {}
    found = {key: prov.get(key) for key in ENVIRONMENT_KEYS}
    found["device_class"] = device_class(prov)
    return found


def environment_differences(
    original: dict[str, Any] | None, rerun: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """``{key: {"original", "rerun"}}`` for each environment key on which the runs differ."""
    a, b = environment(original), environment(rerun)
    return {k: {"original": a[k], "rerun": b[k]} for k in ENVIRONMENT_KEYS if a[k] != b[k]}


def within_tolerance(original: float, rerun: float) -> bool:
    """The stated tolerance (module docstring)."""
    return abs(rerun - original) <= max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(original))


def number(value: Any) -> float | None:
    """A finite metric value, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value) if abs(value) != float("inf") else None
    return None


def compare(
    original: dict[str, Any] | None,
    rerun: dict[str, Any] | None,
    original_provenance: dict[str, Any] | None = None,
    rerun_provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``deltas`` (rerun - original per metric, None where one lacks it), ``identical``,
    ``same_environment``, ``environment_differences``, ``tolerance``, ``within_tolerance``
    and ``outside_tolerance`` (the model metrics that are not)."""
    a, b = flatten(original or {}), flatten(rerun or {})
    differences = environment_differences(original_provenance, rerun_provenance)
    deltas: dict[str, float | None] = {}
    equal, outside = bool(a), []
    for key in sorted(a.keys() | b.keys()):
        x, y = number(a.get(key)), number(b.get(key))
        deltas[key] = None if x is None or y is None else y - x
        if not is_model_metric(key):
            continue
        if x is None or y is None or x != y:
            equal = False
        if x is None or y is None or not within_tolerance(x, y):
            outside.append(key)
    return {
        "deltas": deltas,
        "identical": equal and not differences,
        "same_environment": not differences,
        "environment_differences": differences,
        "tolerance": {"relative": RELATIVE_TOLERANCE, "absolute": ABSOLUTE_TOLERANCE},
        "within_tolerance": bool(a) and not outside,
        "outside_tolerance": outside,
    }
