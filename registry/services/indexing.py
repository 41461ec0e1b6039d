"""The query index: config parameters and final metrics as indexed rows, and reproducibility.

``version_params`` holds each leaf of a version's normalised document as ``(num, text)``:
numbers in ``num``, strings in ``text``, booleans in both (1/0 and 'true'/'false'), nulls as
neither. ``run_metrics`` holds each finished run's final metrics. The filter compiler in
:mod:`registry.query.search` reads only these rows and the ``runs`` columns.

Services call :func:`index_version` when they store a version and :func:`index_finished_run`
when a run finishes; :func:`backfill` fills the index for rows written before it existed
(migration 0003 runs it). Every function takes the session (or connection) first and only
flushes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from registry.document.canonical import flatten
from registry.models import FINISHED_STATUSES, ConfigVersion, Run, RunMetric, VersionParam
from registry.services.reproduction import compare

#: What a run's provenance must hold to be complete (CONTRACT section 3).
REQUIRED_PROVENANCE = (
    "seed",
    "config_hash",
    "python",
    "torch",
    "transformers",
    "mlflow",
    "device",
    "dataset_sha256",
    "code_version",
)

# Core tables with only the columns backfill needs: stable for migration 0003 whatever the
# ORM classes become later.
_versions = sa.table("config_versions", sa.column("id"), sa.column("document", sa.JSON))
_runs = sa.table(
    "runs",
    sa.column("id"),
    sa.column("status"),
    sa.column("metrics", sa.JSON),
    sa.column("provenance", sa.JSON),
    sa.column("reproduces"),
    sa.column("provenance_complete"),
    sa.column("reproduction", sa.JSON),
    sa.column("identical"),
    sa.column("reproduced"),
)
_params = sa.table(
    "version_params",
    sa.column("version_id"),
    sa.column("key"),
    sa.column("num"),
    sa.column("text"),
)
_metrics = sa.table("run_metrics", sa.column("run_id"), sa.column("key"), sa.column("value"))


# --- pure encoding ---------------------------------------------------------------------------


def param_num(value: Any) -> float | None:
    """The number a parameter compares as: numbers, and booleans as 1/0."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def param_text(value: Any) -> str | None:
    """The text a parameter compares as: strings, booleans as 'true'/'false', lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return None


def metric_value(value: Any) -> float | None:
    """A metric as stored: a finite number, else None (not stored)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def param_rows(version_id: int, document: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``version_params`` rows of one document."""
    return [
        {"version_id": version_id, "key": k, "num": param_num(v), "text": param_text(v)}
        for k, v in flatten(document).items()
        if len(k) <= 200
    ]


def metric_rows(run_id: int, metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ``run_metrics`` rows of one run (non-numeric and non-finite values are left out)."""
    rows = []
    for k, v in flatten(metrics or {}).items():
        value = metric_value(v)
        if value is not None and len(k) <= 200:
            rows.append({"run_id": run_id, "key": k, "value": value})
    return rows


def provenance_complete(provenance: dict[str, Any] | None) -> bool:
    """True when every REQUIRED_PROVENANCE field is present and not empty."""
    prov = provenance or {}
    return all(prov.get(k) not in (None, "") for k in REQUIRED_PROVENANCE)


def reproduction_result(
    original: dict[str, Any] | None,
    rerun: dict[str, Any] | None,
    original_provenance: dict[str, Any] | None = None,
    rerun_provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"deltas", "identical", ...}``: :func:`registry.services.reproduction.compare`.

    Identical means the same environment (device class, GPU, torch, transformers, CUDA) and
    the same model metrics, bit for bit; timing and memory metrics (tokens_per_second,
    peak_memory_mb) get a delta but do not count: they measure the machine.
    """
    return compare(original, rerun, original_provenance, rerun_provenance)


# --- the ORM side ----------------------------------------------------------------------------


def index_version(session: Session, version: ConfigVersion) -> None:
    """Replace ``version``'s parameter rows with those of its document."""
    if version.id is None:
        session.flush()
    session.execute(sa.delete(VersionParam).where(VersionParam.version_id == version.id))
    rows = param_rows(version.id, version.document)
    if rows:
        session.execute(sa.insert(VersionParam), rows)


def index_run_metrics(session: Session, run: Run) -> None:
    """Replace ``run``'s metric rows with those of ``run.metrics``."""
    if run.id is None:
        session.flush()
    session.execute(sa.delete(RunMetric).where(RunMetric.run_id == run.id))
    rows = metric_rows(run.id, run.metrics)
    if rows:
        session.execute(sa.insert(RunMetric), rows)


def index_finished_run(session: Session, run: Run) -> None:
    """Index a finished run: its metrics, provenance completeness, and, for a re-run made by
    ``reproduce``, its deltas against the original (and mark the original reproduced)."""
    index_run_metrics(session, run)
    run.provenance_complete = provenance_complete(run.provenance)
    if run.reproduces is None:
        return
    if run.status == "succeeded":
        original = session.get(Run, run.reproduces)
        result = reproduction_result(
            original.metrics if original else None,
            run.metrics,
            original.provenance if original else None,
            run.provenance,
        )
        if original is not None:
            original.reproduced = True
    elif run.status == "failed":
        result = {"deltas": {}, "identical": False}
    else:
        return
    run.reproduction = result
    run.identical = result["identical"]
    session.flush()


# --- backfill --------------------------------------------------------------------------------


def backfill(bind: Session | Connection, batch: int = 500) -> dict[str, int]:
    """Index every stored version and finished run; idempotent. Returns row counts."""
    versions = _backfill_versions(bind, batch)
    runs = _backfill_runs(bind, batch)
    return {"versions": versions, "runs": runs}


def _backfill_versions(bind: Session | Connection, batch: int) -> int:
    last, done = 0, 0
    while True:
        rows = bind.execute(
            sa.select(_versions.c.id, _versions.c.document)
            .where(_versions.c.id > last)
            .order_by(_versions.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return done
        ids = [r.id for r in rows]
        bind.execute(sa.delete(_params).where(_params.c.version_id.in_(ids)))
        new = [p for r in rows for p in param_rows(r.id, _as_dict(r.document))]
        if new:
            bind.execute(sa.insert(_params), new)
        last, done = ids[-1], done + len(rows)


def _backfill_runs(bind: Session | Connection, batch: int) -> int:
    finished = FINISHED_STATUSES
    last, done = 0, 0
    while True:
        rows = bind.execute(
            sa.select(
                _runs.c.id, _runs.c.status, _runs.c.metrics, _runs.c.provenance, _runs.c.reproduces
            )
            .where(_runs.c.id > last, _runs.c.status.in_(finished))
            .order_by(_runs.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return done
        ids = [r.id for r in rows]
        bind.execute(sa.delete(_metrics).where(_metrics.c.run_id.in_(ids)))
        new = [m for r in rows for m in metric_rows(r.id, _as_dict(r.metrics))]
        if new:
            bind.execute(sa.insert(_metrics), new)
        for r in rows:
            _backfill_run(bind, r)
        last, done = ids[-1], done + len(rows)


def _backfill_run(bind: Session | Connection, r: Any) -> None:
    values: dict[str, Any] = {"provenance_complete": provenance_complete(_as_dict(r.provenance))}
    if r.reproduces is not None and r.status in ("succeeded", "failed"):
        if r.status == "succeeded":
            original = bind.execute(
                sa.select(_runs.c.metrics, _runs.c.provenance).where(_runs.c.id == r.reproduces)
            ).one_or_none()
            result = reproduction_result(
                _as_dict(original.metrics if original else None),
                _as_dict(r.metrics),
                _as_dict(original.provenance if original else None),
                _as_dict(r.provenance),
            )
            bind.execute(sa.update(_runs).where(_runs.c.id == r.reproduces).values(reproduced=True))
        else:
            result = {"deltas": {}, "identical": False}
        values.update(reproduction=result, identical=result["identical"])
    bind.execute(sa.update(_runs).where(_runs.c.id == r.id).values(**values))


def _as_dict(value: Any) -> dict[str, Any]:
    # JSON comes back decoded through sa.JSON, but be lenient with a raw string.
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}
