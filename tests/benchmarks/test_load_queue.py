"""The queue under load (issue 10, item 6): 8 worker processes and 2,000 runs on PostgreSQL
behind ``registry serve --workers 4``; every run done exactly once.

The worker processes are ``benchmarks.bench_load_queue.worker_loop``: claim, one or two
heartbeats and a completion over HTTP, with a 10 ms sleep for the work (the fault tests in
tests/worker cover real training). Who claimed which run comes from the processes' own logs;
the outcome from the database. The full size takes about a minute on the 2-core machine.
Latencies are printed, never asserted: timings on a shared machine are no test.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from benchmarks.bench_claims import make_token
from benchmarks.bench_load_queue import (
    OPS,
    check_database,
    fill_queue,
    percentile,
    run_processes,
    worker_loop,
)
from registry.db import transaction_at
from registry.models import Run, RunMetric
from tests.support.dbs import migrate, postgres_database
from tests.support.procs import start_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WORKERS = 8
RUNS = 2000
SERVE_WORKERS = 4
WORK_MS = 10.0


@pytest.mark.timeout(480)
def test_8_worker_processes_do_2000_runs_exactly_once(tmp_path: Path) -> None:
    with postgres_database() as url:
        migrate(url)
        fill_queue(url, RUNS)
        token = make_token(url, "worker")
        env = {"DATABASE_URL": url, "REGISTRY_LEASE_SECONDS": "60"}
        server = start_server(env, tmp_path / "server.log", workers=SERVE_WORKERS)
        try:
            load = run_processes(worker_loop, server.url, token, WORKERS, WORK_MS, tmp_path)
        finally:
            server.proc.stop()
        p99 = {op: round(percentile(load.latencies[op], 99) * 1000) for op in OPS[1:]}
        print(f"{RUNS / load.elapsed:.1f} runs/s; p99 ms {p99}")  # shown with -s; not asserted

        # The workers' logs: each run claimed once, at attempt 1, and completed once with 200.
        per_run = Counter(run for _, run, _ in load.claims)
        assert len(per_run) == RUNS and set(per_run.values()) == {1}
        assert {attempt for _, _, attempt in load.claims} == {1}
        assert sorted(load.completed) == sorted(per_run)
        refused = {key: n for key, n in load.statuses.items() if key[1] not in (200, 204)}
        assert refused == {}, f"requests refused (op, status): {refused}"
        assert len({name for name, _, _ in load.claims}) == WORKERS, "a process claimed nothing"

        # The database: every run succeeded at attempt 1 with the one result of its claimer.
        claimer = {run: name for name, run, _ in load.claims}
        with transaction_at(url) as s:
            rows = s.execute(
                select(Run.id, Run.status, Run.attempt, Run.worker_id, Run.mlflow_run_id)
            ).all()
            metric_rows = dict(
                s.execute(select(RunMetric.run_id, func.count()).group_by(RunMetric.run_id)).all()
            )
        assert len(rows) == RUNS
        assert Counter((status, attempt) for _, status, attempt, _, _ in rows) == {
            ("succeeded", 1): RUNS
        }
        assert {i: worker for i, _, _, worker, _ in rows} == claimer
        assert {i: result for i, _, _, _, result in rows} == {
            run: f"{name}-run{run}" for run, name in claimer.items()
        }
        assert metric_rows == {i: 1 for i, *_ in rows}  # one indexed result ("n") per run
        assert check_database(url, load, RUNS) == []
