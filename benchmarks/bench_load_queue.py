"""Load on the queue: worker processes claim, heartbeat and complete runs over HTTP.

Issue 10, item 6, "load": WORKERS processes (default 8) against ``registry serve --workers
SERVE_WORKERS`` (default 4, real gunicorn processes, each with its reaper thread) on a fresh
PostgreSQL database holding RUNS queued runs (default 2,000). Each process loops the way the
daemon does, with a short sleep for the work instead of training: ``POST /workers/claim``,
one or two ``POST /runs/<id>/heartbeat`` (by the run id's parity), ``POST /runs/<id>/complete``;
it stops when the queue stayed empty for IDLE_LIMIT claims in a row. Every request is timed
client-side and written to the process's own log, one line per request.

Reported: runs/s (first claim to last completion), p50 and p99 latency of claim, heartbeat
and complete, each as a ratio to the same percentile of ``GET /api/v1/health`` (no token, no
SQL: the cheapest request) measured just before through the same server by the same number
of processes in a closed loop; and the exactly-once check: from the workers' logs, each run
claimed once and completed once with 200; from the database, every run ``succeeded`` at
attempt 1 holding the result of the one worker that claimed it.

Run: ``python benchmarks/bench_load_queue.py [--workers 8] [--runs 2000] [--serve-workers 4]
[--work-ms 10] [--quick]``. Needs PostgreSQL at $REGISTRY_TEST_PG_URL (default
postgres@127.0.0.1:5432). The test ``tests/benchmarks/test_load_queue.py`` drives the full size.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_claims import make_token, scratch_database, service  # noqa: E402

#: Empty claims in a row (``IDLE_SLEEP`` s apart) after which a worker process stops.
IDLE_LIMIT = 3
IDLE_SLEEP = 0.2
#: Seconds a worker process may take to start (spawn imports) and the whole load to run.
START_TIMEOUT = 120.0
LOAD_TIMEOUT = 900.0
OPS = ("health", "claim", "heartbeat", "complete")
CONFIG = "load-queue"


def fill_queue(url: str, runs: int) -> None:
    """Queue ``runs`` train runs (priorities 0-4) of one tiny-cpu config version, through the
    service functions, in one transaction."""
    from registry.db import transaction_at
    from registry.document.presets import get_preset
    from registry.services import configs, queue

    with transaction_at(url) as s:
        version = configs.create_config(s, CONFIG, get_preset("tiny-cpu").document).version
        for i in range(runs):
            queue.enqueue(s, version, "train", priority=i % 5, seed=i, created_by="bench")


def _session(token: str | None) -> requests.Session:
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def _post(session: requests.Session, url: str, body: dict[str, Any]) -> tuple[Any, float]:
    began = time.monotonic()
    answer = session.post(url, json=body, timeout=60)
    return answer, time.monotonic() - began


def _one_run(
    session: requests.Session, api: str, job: dict[str, Any], name: str, work_s: float, log: Any
) -> None:
    """Heartbeat once or twice with the work's sleep between, then complete; a 409 ends it."""
    run_id, lease = job["run"]["id"], job["lease"]
    beats = 1 + run_id % 2
    for step in range(1, beats + 1):
        time.sleep(work_s / (beats + 1))
        body = {"lease": lease, "progress": {"step": step}}
        answer, took = _post(session, f"{api}/runs/{run_id}/heartbeat", body)
        log.write(f"heartbeat {run_id} {answer.status_code} {took:.6f}\n")
        if answer.status_code != 200:
            return  # the daemon abandons the run on a refused beat; the check will see it
    time.sleep(work_s / (beats + 1))
    result = f"{name}-run{run_id}"
    body = {"lease": lease, "status": "succeeded", "metrics": {"n": 1.0}, "mlflow_run_id": result}
    answer, took = _post(session, f"{api}/runs/{run_id}/complete", body)
    log.write(f"complete {run_id} {answer.status_code} {took:.6f} {time.monotonic():.6f}\n")


def worker_loop(base: str, token: str, name: str, out: str, work_ms: float, barrier: Any) -> None:
    """One worker process: claim, beat, complete until the queue stays empty; logs each
    request as ``op run_id status seconds``, each claim as ``claim run_id 200 s attempt``."""
    session, api, idle = _session(token), f"{base}/api/v1", 0
    barrier.wait(START_TIMEOUT)
    with open(out, "w", encoding="utf-8") as log:
        while idle < IDLE_LIMIT:
            answer, took = _post(session, f"{api}/workers/claim", {"worker": name})
            if answer.status_code == 204:
                log.write(f"empty - 204 {took:.6f}\n")
                idle += 1
                time.sleep(IDLE_SLEEP)
                continue
            answer.raise_for_status()
            idle, job = 0, answer.json()
            log.write(f"claim {job['run']['id']} 200 {took:.6f} {job['run']['attempt']}\n")
            _one_run(session, api, job, name, work_ms / 1000, log)


def health_loop(base: str, token: str, name: str, out: str, count: float, barrier: Any) -> None:
    """The baseline: ``count`` ``GET /health`` requests in a row, each logged as the load's are
    (no token: ``token`` is there for ``run_processes``' one signature)."""
    session = _session(None)
    barrier.wait(START_TIMEOUT)
    with open(out, "w", encoding="utf-8") as log:
        for _ in range(int(count)):
            began = time.monotonic()
            answer = session.get(f"{base}/api/v1/health", timeout=60)
            log.write(f"health - {answer.status_code} {time.monotonic() - began:.6f}\n")


@dataclass
class Load:
    """What the processes' logs say: every request's latency, and who claimed what."""

    elapsed: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    claims: list[tuple[str, int, int]] = field(default_factory=list)  # (worker, run, attempt)
    completed: list[int] = field(default_factory=list)  # run ids completed with 200

    def read(self, name: str, path: Path) -> float:
        """Add one process's log; returns the time of its last completion (0 if none)."""
        last = 0.0
        for line in path.read_text(encoding="utf-8").splitlines():
            op, run, status, took, *rest = line.split()
            self.statuses[(op, int(status))] += 1
            if op == "empty":
                continue
            self.latencies[op].append(float(took))
            if op == "claim":
                self.claims.append((name, int(run), int(rest[0])))
            elif op == "complete" and status == "200":
                self.completed.append(int(run))
                last = max(last, float(rest[0]))
        return last

    def problems(self) -> list[str]:
        """Anything but one claim at attempt 1 and one 200 completion per run, every beat 200."""
        found = [
            f"{n} x {op} answered {code}"
            for (op, code), n in self.statuses.items()
            if code not in (200, 204)
        ]
        per_run = Counter(run for _, run, _ in self.claims)
        twice = sorted(run for run, n in per_run.items() if n > 1)
        if twice:
            found.append(f"{len(twice)} runs claimed more than once, e.g. {twice[:5]}")
        if any(attempt != 1 for _, _, attempt in self.claims):
            found.append("a claim answered an attempt other than 1")
        if sorted(self.completed) != sorted(per_run):
            found.append("the runs completed are not the runs claimed, once each")
        return found


def run_processes(target: Any, base: str, token: str, n: int, arg: float, logs: Path) -> Load:
    """``n`` spawned processes running ``target`` together; their logs read into a Load."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n + 1)
    names = [f"w{i}" for i in range(n)]
    outs = {name: logs / f"{target.__name__}-{name}.log" for name in names}
    procs = [
        ctx.Process(target=target, args=(base, token, name, str(outs[name]), arg, barrier))
        for name in names
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(START_TIMEOUT)
        began = time.monotonic()
        for p in procs:
            p.join(max(1.0, began + LOAD_TIMEOUT - time.monotonic()))
        failed = [
            f"{name} exit {p.exitcode}"
            for name, p in zip(names, procs, strict=True)
            if p.exitcode != 0
        ]
        if failed:
            raise RuntimeError(f"{target.__name__} failed ({', '.join(failed)}); logs in {logs}")
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    load = Load()
    last = max(load.read(name, outs[name]) for name in names)
    load.elapsed = (last or time.monotonic()) - began
    return load


def check_database(url: str, load: Load, runs: int) -> list[str]:
    """From the database: ``runs`` runs, all succeeded at attempt 1, each holding the result
    of the one worker its claim logged, no lease or worker left; else what is wrong."""
    from registry.db import transaction_at

    with transaction_at(url) as s:
        rows = s.execute(
            text("SELECT id, status, attempt, mlflow_run_id, lease_hash IS NULL FROM runs")
        ).all()
        busy = s.scalar(text("SELECT count(*) FROM workers WHERE current_run_id IS NOT NULL"))
    found = []
    if len(rows) != runs:
        found.append(f"{len(rows)} runs in the database, expected {runs}")
    states = Counter((status, attempt) for _, status, attempt, _, _ in rows)
    if set(states) != {("succeeded", 1)}:
        found.append(f"(status, attempt) counts: {dict(states)}")
    claimer = {run: name for name, run, _ in load.claims}
    wrong = [i for i, _, _, result, _ in rows if result != f"{claimer.get(i)}-run{i}"]
    if wrong:
        found.append(f"{len(wrong)} runs hold no result or another's, e.g. {wrong[:5]}")
    if busy:
        found.append(f"{busy} workers still hold a current run")
    return found


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (1-99) of ``values`` (inclusive method)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def table(baseline: Load, load: Load, runs: int) -> str:
    """The figures as a text table: count, p50 and p99 in ms, each as a ratio to health's."""
    lat = {**load.latencies, "health": baseline.latencies["health"]}
    base50, base99 = percentile(lat["health"], 50), percentile(lat["health"], 99)
    lines = [
        f"{runs} runs in {load.elapsed:.1f} s: {runs / load.elapsed:.1f} runs/s",
        f"{'request':<10} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'p50 x health':>13} "
        f"{'p99 x health':>13}",
    ]
    for op in OPS:
        p50, p99 = percentile(lat[op], 50), percentile(lat[op], 99)
        lines.append(
            f"{op:<10} {len(lat[op]):>6} {p50 * 1000:>8.1f} {p99 * 1000:>8.1f} "
            f"{p50 / base50:>13.1f} {p99 / base99:>13.1f}"
        )
    return "\n".join(lines)


def bench(url: str, args: argparse.Namespace, tmp: Path) -> list[str]:
    """Fill the queue, serve, measure the baseline and the load; print; return the problems."""
    fill_queue(url, args.runs)
    token = make_token(url, "worker")
    with service(url, args.serve_workers, tmp / "service.log") as base:
        baseline = run_processes(health_loop, base, token, args.workers, args.health, tmp)
        load = run_processes(worker_loop, base, token, args.workers, args.work_ms, tmp)
    problems = load.problems() + check_database(url, load, args.runs)
    print(
        f"queue load: {args.workers} worker processes, {args.runs} runs, registry serve "
        f"--workers {args.serve_workers}, PostgreSQL, {os.cpu_count()} cores, "
        f"work {args.work_ms:g} ms per run, 1-2 heartbeats per run"
    )
    print(table(baseline, load, args.runs))
    claimed = len({run for _, run, _ in load.claims})
    print(
        f"exactly once: {'yes' if not problems else 'NO'} ({len(load.claims)} claims of "
        f"{claimed} runs; {load.statuses[('empty', 204)]} empty claims at the end)"
    )
    for problem in problems:
        print(f"  PROBLEM: {problem}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=8, help="worker processes (default 8)")
    p.add_argument("--runs", type=int, default=2000, help="queued runs (default 2000)")
    p.add_argument("--serve-workers", type=int, default=4, help="gunicorn workers (default 4)")
    p.add_argument("--work-ms", type=float, default=10.0, help="sleep per run (default 10)")
    p.add_argument("--health", type=int, default=300, help="baseline requests per process")
    p.add_argument("--quick", action="store_true", help="2 workers, 60 runs: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.workers, args.runs, args.serve_workers, args.health = 2, 60, 2, 30
    with tempfile.TemporaryDirectory() as tmp, scratch_database() as url:
        return 1 if bench(url, args, Path(tmp)) else 0


if __name__ == "__main__":
    sys.exit(main())
