"""What the run pages show beyond the stored row: progress with an ETA, metric deltas, charts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from registry.document import spec
from registry.http.web.charts import Chart, Series, line_chart
from registry.http.web.history import History
from registry.models import Run

#: Metrics shown first, in this order; the rest follow by name.
MAIN_METRICS = (
    "train_loss",
    "val_loss",
    "val_perplexity",
    "val_accuracy",
    "tokens_per_second",
    "gen_distinct_2",
    "gen_repetition_rate",
)


@dataclass(frozen=True)
class Progress:
    """Where a running run is, from its last heartbeat."""

    phase: str | None
    step: int | None
    total: int | None
    eta_seconds: float | None

    @property
    def percent(self) -> int | None:
        """Share of the steps done, 0-100."""
        if self.step is None or not self.total:
            return None
        return max(0, min(100, round(100 * self.step / self.total)))


def progress_of(run: Run, now: dt.datetime) -> Progress | None:
    """The heartbeat's phase, step and total, and an ETA from the pace since the start."""
    info: dict[str, Any] = run.progress or {}
    if run.status != "running" or not info:
        return None
    step, total = _int(info.get("step")), _int(info.get("total"))
    eta = None
    if step and total and run.started_at is not None and step <= total:
        elapsed = (now - run.started_at).total_seconds()
        eta = elapsed / step * (total - step) if elapsed > 0 else None
    phase = info.get("phase")
    return Progress(str(phase) if phase is not None else None, step, total, eta)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def ordered_metrics(metrics: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The run's metrics, the contract's first."""
    metrics = metrics or {}
    first = [(k, metrics[k]) for k in MAIN_METRICS if k in metrics]
    return first + sorted((k, v) for k, v in metrics.items() if k not in MAIN_METRICS)


def metric_deltas(original: dict[str, Any] | None, copy: dict[str, Any] | None) -> list[Any]:
    """(key, original, reproduction, difference) for each metric both runs have."""
    original, copy = original or {}, copy or {}
    rows = []
    for key, value in ordered_metrics(copy):
        before = original.get(key)
        numbers = all(isinstance(v, int | float) for v in (before, value))
        rows.append((key, before, value, value - before if numbers else None))
    return rows


def run_chart(history: History) -> Chart:
    """Training and validation loss over steps."""
    series = [
        Series(key, [(float(s), v) for s, v in history.curves.get(key, [])])
        for key in ("train_loss", "val_loss")
    ]
    return line_chart("Loss over steps", [s for s in series if s.points])


def overlay_chart(key: str, histories: list[tuple[Run, History]]) -> Chart:
    """One metric of several runs on one chart."""
    series = [
        Series(f"run {run.id}", [(float(s), v) for s, v in history.curves.get(key, [])])
        for run, history in histories
    ]
    return line_chart(f"{key} over steps", series)


def config_differences(runs: list[Run], all_fields: bool) -> list[tuple[str, list[Any]]]:
    """(path, [value in each run]) for the fields where the runs' configs differ."""
    flats = [spec.flatten(run.version.document) for run in runs]
    paths = sorted(set().union(*flats)) if flats else []
    rows = []
    for path in paths:
        values = [flat.get(path) for flat in flats]
        if all_fields or any(v != values[0] or type(v) is not type(values[0]) for v in values):
            rows.append((path, values))
    return rows
