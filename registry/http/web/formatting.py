"""Template filters: times, numbers, hashes and document values as people read them."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from registry.models import RUN_STATUSES

STATUSES = RUN_STATUSES


def when(value: dt.datetime | None) -> str:
    """``2026-11-30 14:05:09 UTC``; an empty string for None."""
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(seconds: float | None) -> str:
    """A duration as ``12 s``, ``4 min``, ``3 h``, ``2 d``."""
    if seconds is None:
        return "never"
    seconds = max(0.0, float(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def num(value: Any) -> str:
    """Integers with thousands separators; floats to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return value_text(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def value_text(value: Any) -> str:
    """A document value as YAML would spell it: null, true, 3e-05, text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


value = value_text


def short_hash(value: str | None) -> str:
    """The first 12 hex digits of a hash."""
    return (value or "")[:12]


def status_class(status: str | None) -> str:
    """The CSS class of a status badge (only known statuses get a colour)."""
    return f"badge status-{status}" if status in STATUSES else "badge"
