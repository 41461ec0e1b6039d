"""Issue 8's A/B: the query planner (registry.query.plan) against the plain compiled query.

Data: ``benchmarks.common.make_dataset(N)`` (320 config versions, N finished runs with final
metrics). The versions go in through the services (which index their params); the runs and
their ``run_metrics`` rows (shaped by ``indexing.metric_rows``) are bulk-written into the tables
(SQLAlchemy Core executemany on SQLite, COPY on PostgreSQL) with the tables' indexes dropped,
then rebuilt from the models. A throwaway SQLite file and, with --postgres, a throwaway
PostgreSQL database (created, VACUUM ANALYZE after the load, dropped); SQLite gets no ANALYZE
(a deployed database has none).

Queries: a mix of bench_query_mlflow.py's, through ``search_runs`` in this process, limit 100:
with the planner, with ``planned=False`` (the plain compiled query: one select, the database
plans it) and, with --ablate, the planner less one branch (:func:`variants`); --probes adds
shapes outside the mix. Every page is checked against a pure-Python evaluation. One warm-up
call per variant, then --repeat calls interleaved across variants (one only for a variant whose
warm-up took over --slow-ms); the median.

Run: ``python benchmarks/bench_planner.py --runs 100000,1000000 --postgres [--ablate]
[--probes]``; ``--quick`` for a smoke run. Prints markdown tables; writes var/bench/planner.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks import bench_query_mlflow as mlq  # noqa: E402
from benchmarks.common import Dataset, make_dataset, provenance  # noqa: E402

#: Where the JSON goes (and the SQLite files while they live); REGISTRY_BENCH_DIR moves it.
VAR = Path(os.environ.get("REGISTRY_BENCH_DIR") or ROOT / "var" / "bench")
LIMIT = 100


@dataclass(frozen=True)
class Case:
    """One query of the mix: its name, its query's (in QUERY_BY_NAME), the page read."""

    name: str
    query: str
    page: int = 1


_MIX = ["param =", "metric <", "order by metric only", "metric range", "2 params + status"]
_MIX += ["3 params + 2 metrics", "status = failed", "IN + NOT, order date", "order by param"]
MIX = [Case(name, name) for name in [*_MIX, "param range + NOT"]]
MIX.insert(9, Case("order by param, page 2", "order by param", 2))

#: Shapes outside the mix (so outside its keep-or-delete rule), timed with --probes: a
#: selective filter under a param order, and rare versions under orders they correlate with.
_RARE = "params.training.learning_rate = 1e-5 AND params.model.num_hidden_layers = 2"
_RARE += " AND params.data.seq_len = 128"


def _rare(r: Any, d: dict[str, Any]) -> bool:
    lr, layers, seq = d["training.learning_rate"], d["model.num_hidden_layers"], d["data.seq_len"]
    return lr == 1e-5 and layers == 2 and seq == 128


_SELECTIVE = "params.model.model_dim = 1024 AND metrics.val_loss < 2.0"


def _selective(r: Any, d: dict[str, Any]) -> bool:
    return bool(d["model.model_dim"] == 1024 and mlq.m(r, "val_loss") < 2.0)


def _probe(name: str, filter: str, order: str, pred: Any, sort: Any) -> mlq.Query:
    return mlq.Query(name, filter, order, None, None, pred, sort)


_LR_DESC = "params.training.learning_rate DESC"
_BY_LR_DESC, _BY_LOSS = mlq.by_param("training.learning_rate", True), mlq.by_metric("val_loss")
PROBE_QUERIES = [
    _probe("selective filter, param order", _SELECTIVE, _LR_DESC, _selective, _BY_LR_DESC),
    _probe("rare versions, metric order", _RARE, "metrics.val_loss", _rare, _BY_LOSS),
    _probe("rare versions, date order", _RARE, "created_at DESC", _rare, mlq.newest),
]
PROBES = [Case(f"probe: {q.name}", q.name) for q in PROBE_QUERIES]
QUERY_BY_NAME = {q.name: q for q in [*mlq.QUERIES, *PROBE_QUERIES]}


# --- variants: plain, the planner, the planner less one branch --------------------------------

Patch = tuple[Any, str, Any]


def variants(kind: str, ablate: bool) -> dict[str, tuple[bool, list[Patch]]]:
    """Variant name -> (planned, the patches (module, attribute, value) it runs under).

    ``ablate`` adds the planner with one threshold at zero, which turns its branch off:
    ``GROUP_ROWS`` (no walk of a param's values), ``MAX_LISTED_VERSIONS`` (param clauses
    stay subqueries)."""
    from registry.query import compile, plan

    out: dict[str, tuple[bool, list[Patch]]] = {"plain": (False, []), "planner": (True, [])}
    if ablate:
        out["-group walk"] = (True, [(plan, "GROUP_ROWS", 0)])
        out["-version lists"] = (True, [(compile, "MAX_LISTED_VERSIONS", 0)])
    return out


def patched(patches: list[Patch]) -> contextlib.ExitStack:
    """The patches applied until the returned stack closes."""
    stack = contextlib.ExitStack()
    for obj, name, value in patches:
        stack.enter_context(mock.patch.object(obj, name, value))
    return stack


# --- loading ---------------------------------------------------------------------------------


def load(url: str, data: Dataset, log: Callable[[str], None]) -> dict[str, float]:
    """Migrate ``url``, add the versions through the services, bulk-write the runs."""
    from alembic import command

    from registry.db import make_engine, make_session_factory, transaction
    from registry.migrations import alembic_config
    from registry.services import configs

    t0 = time.perf_counter()
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(url)
    version_ids: list[int] = []
    with transaction(make_session_factory(engine)) as s:
        made: set[str] = set()
        for v in data.versions:
            add = configs.add_version if v.config in made else configs.create_config
            version_ids.append(add(s, v.config, v.doc, created_by="bench").version.id)
            made.add(v.config)
    with _indexes_dropped(engine):
        t1 = time.perf_counter()
        if engine.dialect.name == "postgresql":
            _copy_postgres(engine, data, version_ids)
        else:
            _insert_sqlite(engine, data, version_ids)
        t2 = time.perf_counter()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()
    notes = {"rows_s": t2 - t1, "indexes_s": time.perf_counter() - t2}
    notes["total_s"] = time.perf_counter() - t0
    log(f"  loaded {len(data.runs)} runs: " + ", ".join(f"{k} {v:.0f}" for k, v in notes.items()))
    return notes


@contextlib.contextmanager
def _indexes_dropped(engine: sa.Engine) -> Iterator[None]:
    """The runs and run_metrics indexes (not the keys) dropped, then rebuilt from the models."""
    from registry.models import Run, RunMetric

    tables = [Run.__table__, RunMetric.__table__]
    indexes = [ix for t in tables for ix in t.indexes]  # type: ignore[attr-defined]
    found = {ix["name"] for t in tables for ix in sa.inspect(engine).get_indexes(t.name)}
    assert found == {ix.name for ix in indexes}, (found, [ix.name for ix in indexes])
    with engine.begin() as conn:
        for ix in indexes:
            ix.drop(conn)
    yield
    with engine.begin() as conn:
        for ix in indexes:
            ix.create(conn)


def _run_row(data: Dataset, version_ids: list[int], i: int) -> dict[str, Any]:
    import datetime as dt

    r = data.runs[i]
    start = dt.datetime.fromtimestamp(r.start_ms / 1000, dt.UTC)
    return {
        "id": r.run_id,
        "config_version_id": version_ids[r.version],
        "kind": "train",
        "status": r.status,
        "queue": "default",
        "priority": 0,
        "attempt": 1,
        "seed": r.seed,
        "cancel_requested": False,
        "metrics": r.metrics,
        "provenance": provenance(data, r),
        "created_at": start,
        "provenance_complete": True,
        "reproduced": False,
    }


def _metric_rows(data: Dataset, lo: int, hi: int) -> list[dict[str, Any]]:
    from registry.services.indexing import metric_rows

    return [row for r in data.runs[lo:hi] for row in metric_rows(r.run_id, r.metrics)]


def _insert_sqlite(engine: sa.Engine, data: Dataset, version_ids: list[int]) -> None:
    from registry.models import Run, RunMetric

    chunk = 50_000
    for lo in range(0, len(data.runs), chunk):
        hi = min(lo + chunk, len(data.runs))
        with engine.begin() as conn:
            rows = [_run_row(data, version_ids, i) for i in range(lo, hi)]
            conn.execute(sa.insert(Run.__table__), rows)
            conn.execute(sa.insert(RunMetric.__table__), _metric_rows(data, lo, hi))


def _copy_postgres(engine: sa.Engine, data: Dataset, version_ids: list[int]) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        cols = list(_run_row(data, version_ids, 0))
        json_cols = {"metrics", "provenance"}
        with conn.cursor() as cur:
            with cur.copy(f"COPY runs ({', '.join(cols)}) FROM STDIN") as copy:
                for i in range(len(data.runs)):
                    row = _run_row(data, version_ids, i)
                    copy.write_row([_json(row[c]) if c in json_cols else row[c] for c in cols])
            with cur.copy("COPY run_metrics (run_id, key, value) FROM STDIN") as copy:
                for lo in range(0, len(data.runs), 50_000):
                    for m in _metric_rows(data, lo, lo + 50_000):
                        copy.write_row((m["run_id"], m["key"], m["value"]))
            cur.execute("SELECT setval('runs_id_seq', (SELECT max(id) FROM runs))")
        conn.commit()
    finally:
        raw.close()


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


@contextlib.contextmanager
def database(kind: str, n: int) -> Iterator[str]:
    """A throwaway, empty database of ``kind``: its URL; dropped (or deleted) afterwards."""
    if kind == "sqlite":
        VAR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=VAR, prefix=f"planner-{n}-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'registry.db'}"
        return
    name = f"cr_bench_planner_{n}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(mlq.PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield mlq.PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- timing ----------------------------------------------------------------------------------


def _page(factory: Any, case: Case, cursors: dict[str, str | None], planned: bool) -> list[int]:
    """The ids of ``case``'s page (the cursor of its page 1 found once, by the planner)."""
    from registry.query.search import search_runs

    q = QUERY_BY_NAME[case.query]
    with factory() as session:
        cursor = cursors.get(case.name)
        if case.page > 1 and case.name not in cursors:
            for _ in range(case.page - 1):
                _, cursor = search_runs(session, q.filter, q.order_by, LIMIT, cursor)
            cursors[case.name] = cursor
        runs, _ = search_runs(session, q.filter, q.order_by, LIMIT, cursor, planned=planned)
        ids = [r.id for r in runs]
        session.rollback()
    return ids


def bench(
    url: str, cases: list[Case], truth: dict[str, list[int]], args: argparse.Namespace
) -> dict[str, Any]:
    """Per case and variant: the median ms (and whether every page was right)."""
    from registry.db import make_engine, make_session_factory

    engine = make_engine(url)
    factory = make_session_factory(engine)
    timed = variants(engine.dialect.name, args.ablate)
    cursors: dict[str, str | None] = {}
    out: dict[str, Any] = {}
    for case in cases:
        times: dict[str, list[float]] = {v: [] for v in timed}
        ok = True
        for rep in range(args.repeat + 1):
            for name, (planned, patches) in timed.items():
                if rep > 1 and times[name] and times[name][0] > args.slow_ms:
                    continue
                with patched(patches):
                    start = time.perf_counter()
                    ids = _page(factory, case, cursors, planned)
                    ms = (time.perf_counter() - start) * 1000
                if rep == 0:
                    ok = ok and ids == truth[case.name]
                    if ids != truth[case.name]:
                        print(f"  WRONG PAGE {case.name} / {name}: {ids[:5]}...", flush=True)
                times[name].append(ms)
        out[case.name] = {v: statistics.median(t[1:] or t) for v, t in times.items()}
        out[case.name]["same"] = ok
        cells = "".join(f"{v} {out[case.name][v]:8.1f}  " for v in timed)
        print(f"  {case.name:24s}{cells}{'ok' if ok else 'WRONG'}", flush=True)
    engine.dispose()
    return out


# --- the report ------------------------------------------------------------------------------


def truths(data: Dataset, cases: list[Case]) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Each case's page by the pure-Python evaluation, and its query's matches."""
    from registry.document.spec import flatten

    flat = [flatten(doc) for doc in data.normalized]
    pages, matches = {}, {}
    for case in cases:
        ids, matches[case.name] = mlq.expected(
            data, flat, QUERY_BY_NAME[case.query], LIMIT * case.page
        )
        pages[case.name] = ids[LIMIT * (case.page - 1) :]
    return pages, matches


def table(results: dict[str, Any], matches: dict[int, dict[str, int]]) -> str:
    """Markdown tables: per size and database, ms per page of each variant (and / planner)."""
    lines = []
    for n, by_db in results.items():
        for db, rows in by_db.items():
            variants = [v for v in next(iter(rows.values())) if v != "same"]
            lines.append(f"\n{db}, {int(n):,} runs: ms per page (ratio to the planner)\n")
            lines.append("| query | matches | " + " | ".join(variants) + " |")
            lines.append("|" + "---|" * (len(variants) + 2))
            for case, row in rows.items():
                cells = [f"{row[v]:.1f} ({row[v] / row['planner']:.2f}x)" for v in variants]
                cells[variants.index("planner")] = f"{row['planner']:.1f}"
                name = case if row["same"] else f"{case} (WRONG)"
                lines.append(f"| {name} | {matches[n][case]:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", action="append", help="sizes, repeatable or a comma list")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="2000 runs, 2 repeats: a smoke run")
    parser.add_argument("--ablate", action="store_true", help="also the planner less a branch")
    parser.add_argument("--probes", action="store_true", help="also shapes outside the mix")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--slow-ms", type=float, default=1500, help="timed once when slower")
    parser.add_argument("--out", type=Path, default=VAR / "planner.json")
    args = parser.parse_args()
    sizes = [int(x) for item in args.runs or ["100000"] for x in item.split(",") if x.strip()]
    sizes, args.repeat = ([2000], 2) if args.quick else (sizes, args.repeat)
    kinds = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    cases = MIX + (PROBES if args.probes else [])
    results: dict[int, dict[str, Any]] = {}
    matches: dict[int, dict[str, int]] = {}
    for n in sizes:
        t0 = time.perf_counter()
        data = make_dataset(n)
        truth, matches[n] = truths(data, cases)
        print(f"{n} runs generated in {time.perf_counter() - t0:.0f}s", flush=True)
        for kind in kinds:
            with database(kind, n) as url:
                load(url, data, print)
                print(f"{kind}, {n} runs:", flush=True)
                results.setdefault(n, {})[kind] = bench(url, cases, truth, args)
        del data
    print(table(results, matches))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "matches": matches}, indent=2))
    print(f"wrote {args.out}")
    rows = [row for by_db in results.values() for r in by_db.values() for row in r.values()]
    if not all(row["same"] for row in rows):
        raise SystemExit("some pages differ from the expected ones")


if __name__ == "__main__":
    main()
