"""Claims per second through the API vs a raw SKIP LOCKED loop, and a warm daemon's start.

1. raw: CLIENTS processes, each with its own psycopg connection, loop the claim statement
   (``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``) in
   autocommit on a fresh PostgreSQL database;
2. api: ``registry serve`` on the same database and CLIENTS processes looping
   ``POST /workers/claim`` over keep-alive HTTP (each claim also authenticates, reaps expired
   leases, records the worker and loads the run with its config);
3. the ratio api / raw (goal: at least 0.5), and the same clients on ``GET /health`` (no
   token, no SQL): the most any route can reach through this HTTP stack on this machine;
4. latency: a warm ``registry-worker`` (imports done once), then runs of the tiny-cpu preset
   queued one at a time; its log line ``claim->first-step`` (claim answer to the training
   loop's first step) per run.

Run: ``python benchmarks/bench_claims.py [--clients 8] [--seconds 5] [--latency-runs 3]``.
Needs PostgreSQL at $REGISTRY_TEST_PG_URL (default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry.cli.devstack import BIN, Child, child_env, free_port, spawn, wait_healthy  # noqa: E402
from registry.settings import Settings  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "REGISTRY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
RAW_CLAIM = """
UPDATE runs SET status = 'running', worker_id = %(w)s,
       lease_expires_at = now() + interval '60 seconds',
       started_at = coalesce(started_at, now())
 WHERE id = (SELECT id FROM runs WHERE status = 'queued' AND queue = %(q)s
              ORDER BY priority DESC, id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id
"""


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database; dropped afterwards."""
    from alembic import command

    from registry.migrations import alembic_config

    name = f"cr_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def fill_queue(url: str, runs: int) -> None:
    """Empty the runs table and queue ``runs`` runs of one stored config version."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE workers SET current_run_id = NULL"))
        conn.execute(text("DELETE FROM runs"))
        version_id = conn.execute(text("SELECT id FROM config_versions LIMIT 1")).scalar()
        if version_id is None:
            conn.execute(text("INSERT INTO configs (name, created_at) VALUES ('bench', now())"))
            version_id = conn.execute(
                text(
                    "INSERT INTO config_versions (config_id, version, hash, document, created_at) "
                    "SELECT id, 1, repeat('0', 64), '{\"training\": {\"seed\": 1}}', now() "
                    "FROM configs WHERE name = 'bench' RETURNING id"
                )
            ).scalar()
        conn.execute(
            text(
                "INSERT INTO runs (config_version_id, kind, status, queue, priority, attempt, "
                "seed, cancel_requested, created_at) SELECT :v, 'train', 'queued', 'default', "
                "g % 5, 1, 1, false, now() FROM generate_series(1, :n) AS g"
            ),
            {"v": version_id, "n": runs},
        )
        conn.execute(text("ANALYZE runs"))
    engine.dispose()


def _raw_client(url: str, seconds: float, start: Any, counts: Any, index: int) -> None:
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        start.wait()
        done, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            if conn.execute(RAW_CLAIM, {"w": f"raw{index}", "q": "default"}).fetchone() is None:
                break
            done += 1
    counts[index] = done


def _api_client(url: str, token: str, seconds: float, start: Any, counts: Any, index: int) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    body = {"worker": f"api{index}", "queues": ["default"]}
    start.wait()
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = session.post(f"{url}/api/v1/workers/claim", json=body, timeout=30)
        if answer.status_code != 200:
            break
        done += 1
    counts[index] = done


def _health_client(
    url: str, token: str, seconds: float, start: Any, counts: Any, index: int
) -> None:
    """The HTTP stack's ceiling: the same clients on ``GET /health`` (no token, no SQL)."""
    session = requests.Session()
    start.wait()
    done, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        session.get(f"{url}/api/v1/health", timeout=30).raise_for_status()
        done += 1
    counts[index] = done


def measure(
    target: Callable[..., None], args: tuple[Any, ...], clients: int, seconds: float
) -> float:
    """Claims per second of ``clients`` processes running ``target`` together."""
    ctx = mp.get_context("spawn")
    start, counts = ctx.Event(), ctx.Array("i", clients)
    procs = [
        ctx.Process(target=target, args=(*args, seconds, start, counts, i)) for i in range(clients)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every client connect first
    began = time.monotonic()
    start.set()
    for p in procs:
        p.join()
    elapsed = min(time.monotonic() - began, seconds)
    return sum(counts[:]) / elapsed


def make_token(url: str, role: str) -> str:
    from registry.db import make_engine, make_session_factory, transaction
    from registry.services.auth import create_token

    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as s:
        secret = create_token(s, f"bench-{role}", role)
    engine.dispose()
    return secret


@contextmanager
def service(url: str, workers: int, log: Path, lease: int = 60) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=url, lease_seconds=lease)
    args = [str(BIN / "registry"), "serve", "--port", str(port), "--workers", str(workers)]
    env = child_env(settings, base) | {
        "REGISTRY_LEASE_SECONDS": str(lease),
        "REGISTRY_SECRET_KEY": secrets.token_urlsafe(48),
    }
    child = spawn("registry serve", args, env, log)
    try:
        wait_healthy(child, f"{base}/api/v1/health", 60)
        yield base
    finally:
        child.stop()


def bench_claims(url: str, args: argparse.Namespace, tmp: Path) -> None:
    runs = args.runs
    fill_queue(url, runs)
    raw = measure(_raw_client, (url,), args.clients, args.seconds)
    fill_queue(url, runs)
    token = make_token(url, "worker")
    with service(url, args.server_workers, tmp / "service.log") as base:
        api = measure(_api_client, (base, token), args.clients, args.seconds)
        ceiling = measure(_health_client, (base, token), args.clients, args.seconds)
    print(f"claims/s with {args.clients} clients on PostgreSQL ({os.cpu_count()} cores):")
    print(f"  raw SKIP LOCKED loop : {raw:8.0f}")
    print(f"  POST /workers/claim  : {api:8.0f}  (registry serve --workers {args.server_workers})")
    print(f"  ratio api / raw      : {api / raw:8.2f}  (goal >= 0.5)")
    print(
        f"  GET /health          : {ceiling:8.0f}  (the HTTP stack's ceiling on this machine:"
        f" ratio {ceiling / raw:.2f} with a claim that cost nothing)"
    )


def bench_latency(url: str, runs: int, tmp: Path) -> None:
    """claim->first-step of a warm daemon, for ``runs`` tiny runs queued one at a time."""
    admin = make_token(url, "admin")
    worker_token = make_token(url, "worker")
    with service(url, 2, tmp / "service-latency.log") as base:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {admin}"
        answer = session.get(f"{base}/api/v1/presets/tiny-cpu", timeout=10)
        answer.raise_for_status()
        preset = answer.json()  # the preset's config document itself
        session.post(
            f"{base}/api/v1/configs", json={"name": "latency", "config": preset}, timeout=30
        ).raise_for_status()
        settings = Settings(
            database_url=url,
            mlflow_tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            mlflow_artifact_root=str(tmp / "artifacts"),
        )
        log = tmp / "worker.log"
        argv = [
            str(BIN / "registry-worker"),
            "--poll-max",
            "0.2",
            "--state-dir",
            str(tmp / "state"),
            "--queue",
            "latency",
        ]
        worker = spawn("registry-worker", argv, child_env(settings, base, worker_token), log)
        try:
            _wait_log(worker, log, "warm:", 120)
            figures = [_one_latency(session, base, worker, log, i) for i in range(runs)]
        finally:
            worker.stop()
    print(
        f"claim -> first training step, warm daemon, tiny-cpu ({runs} runs): "
        + ", ".join(f"{f:.3f}s" for f in figures)
        + f"; median {statistics.median(figures):.3f}s"
    )


def _one_latency(
    session: requests.Session, base: str, worker: Child, log: Path, index: int
) -> float:
    # force: the same config and seed again on purpose (otherwise a 409 duplicate run).
    body = {"config": "latency", "kind": "train", "queue": "latency", "force": True}
    answer = session.post(f"{base}/api/v1/runs", json=body, timeout=30)
    answer.raise_for_status()
    run = answer.json()
    line = _wait_log(worker, log, f"run={run['id']} claim->first-step", 300)
    while session.get(f"{base}/api/v1/runs/{run['id']}", timeout=10).json()["status"] in (
        "queued",
        "running",
    ):
        time.sleep(0.2)
    return float(re.search(r"first-step ([0-9.]+)s", line).group(1))  # type: ignore[union-attr]


def _wait_log(child: Child, log: Path, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if needle in line:
                return line
        if not child.alive():
            raise RuntimeError(f"the worker exited; see {log}")
        time.sleep(0.1)
    raise RuntimeError(f"no {needle!r} in {log} after {timeout}s")


def _stop_on_sigterm(_signum: int, _frame: Any) -> None:
    raise SystemExit("terminated")  # so the servers, the worker and the database are cleaned up


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=30000, help="queued runs (enough for --seconds)")
    p.add_argument("--server-workers", type=int, default=max(2, os.cpu_count() or 2))
    p.add_argument("--latency-runs", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scratch_database() as url:
        bench_claims(url, args, Path(tmp))
        if args.latency_runs:
            bench_latency(url, args.latency_runs, Path(tmp))


if __name__ == "__main__":
    main()
