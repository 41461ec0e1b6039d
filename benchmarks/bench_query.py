"""In-process latency of registry.query.search_runs on the query benchmark's stores, with plans.

The profiling companion of ``bench_query_mlflow.py`` (which times the HTTP API against
MLflow): the same cached databases under var/bench/ (loaded through the services when
missing), the same queries, but ``search_runs`` called in this process, so the time is the
database's plus the ORM's. Each query's statements are counted (lazy loads of a run's
version and config, as the API's run_json reads them, included), and with ``--explain``
printed with their plans (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN ANALYZE``).

Run: ``python benchmarks/bench_query.py [--runs 100000] [--postgres] [--explain] [--only NAME]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy import event  # noqa: E402

from benchmarks.bench_query_mlflow import (  # noqa: E402
    QUERIES,
    ensure_mlflow,
    ensure_postgres,
    ensure_sqlite,
    expected,
    mlflow_ids,
)
from benchmarks.common import make_dataset  # noqa: E402


def touch(runs: list[Any]) -> None:
    """Read what the API's run_json reads beyond the row: the version and its config."""
    for r in runs:
        _ = (r.version.version, r.version.hash, r.version.config.name)


def bench(url: str, args: argparse.Namespace, data: Any, flat: list[dict[str, Any]]) -> dict:
    from registry.db import make_engine, make_session_factory
    from registry.query.search import search_runs

    engine = make_engine(url)
    factory = make_session_factory(engine)
    captured: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    out: dict[str, Any] = {}
    for q in QUERIES:
        if args.only and args.only.lower() not in q.name.lower():
            continue
        want, _ = expected(data, flat, q, 100)
        times, statements = [], 0
        for i in range(args.repeat + 1):
            with factory() as session:
                captured.clear()
                start = time.perf_counter()
                runs, _cursor = search_runs(session, q.filter, q.order_by, 100)
                touch(runs)
                elapsed = (time.perf_counter() - start) * 1000
                statements = len(captured)
                if i == 0:
                    assert [r.id for r in runs] == want, f"{q.name}: wrong runs"
                    plans = list(captured)
                else:
                    times.append(elapsed)
                session.rollback()
        out[q.name] = statistics.median(times)
        print(f"  {q.name:24s}{out[q.name]:9.1f} ms  {statements:3d} statements", flush=True)
        if args.explain:
            _explain(engine, plans)
    engine.dispose()
    return out


def _explain(engine: sa.Engine, statements: list[tuple[str, Any]]) -> None:
    prefix = (
        "EXPLAIN (ANALYZE, BUFFERS) "
        if engine.dialect.name == "postgresql"
        else "EXPLAIN QUERY PLAN "
    )
    with engine.connect() as conn:
        for sql, params in statements:
            if "runs" not in sql or sql.lstrip().upper().startswith(("BEGIN", "SAVEPOINT")):
                continue
            print("    " + " ".join(sql.split())[:1500])
            rows = conn.exec_driver_sql(prefix + sql, params).all()
            for row in rows:
                print("      " + " | ".join(str(c) for c in row))
        conn.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--only", help="queries whose name contains this")
    parser.add_argument("--client-runs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--reload", action="store_true")
    args = parser.parse_args()
    from registry.document.spec import flatten

    data = make_dataset(args.runs)
    flat = [flatten(doc) for doc in data.normalized]
    ml_path, _ = ensure_mlflow(args.runs, data, args, print)
    ids = mlflow_ids(ml_path)
    if not args.no_sqlite:
        url, _ = ensure_sqlite(args.runs, data, ids, args, print)
        print(f"sqlite, {args.runs} runs, search_runs in-process (median of {args.repeat}):")
        bench(url, args, data, flat)
    if args.postgres:
        url, _ = ensure_postgres(args.runs, data, ids, args, print)
        print(f"postgres, {args.runs} runs:")
        bench(url, args, data, flat)


if __name__ == "__main__":
    main()
