"""Every service process restarted while workers train: ``registry serve`` stopped with SIGTERM,
later killed with SIGKILL, each time started again on the same port. The real ``registry-worker``s
keep training (their heartbeats fail meanwhile and are retried) and deliver: each run succeeds
once, as attempt 1, on the worker that claimed it (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from registry.settings import Settings
from tests.support.livestack import (
    assert_one_result,
    elapsed,
    queue_tiny_runs,
    reported,
    wait_progress,
    wait_succeeded,
    worker,
)
from tests.support.procs import Proc, Server, free_port, start_server, wait_for

pytestmark = pytest.mark.slow

#: The default lease: beats go every third of it (20 s), and a whole lease without an accepted
#: one stops the run (self-fencing). A restart here takes 5-25 s (a SIGTERM lets gunicorn finish
#: its requests for up to 10 s, then a loaded machine imports the app again).
LEASE_S = 60
STEPS = 150


def _heartbeat_failures(workers: list[Proc]) -> int:
    return sum(w.output().count("heartbeat failed") for w in workers)


def _wait_failed_beat(workers: list[Proc], failures_before: int) -> None:
    """Until a heartbeat has failed since; at most one beat interval."""
    more = lambda: _heartbeat_failures(workers) > failures_before  # noqa: E731
    wait_for(more, LEASE_S / 3 + 5, "a failed heartbeat")


def _down(server: Server, sig: signal.Signals) -> None:
    """Stop every process of the service (gunicorn's arbiter and its workers) with ``sig``."""
    os.killpg(server.proc.pid, sig)
    server.proc.wait(30)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/api/v1/health", timeout=2)


def test_restarting_the_service_mid_run_loses_and_doubles_nothing(
    settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    env = {"DATABASE_URL": settings.database_url, "REGISTRY_LEASE_SECONDS": str(LEASE_S)}
    port, logs = free_port(), tmp_path / "logs"
    server = start_server(env, logs / "server-0.log", port=port)
    admin = tokens["admin"]
    runs = queue_tiny_runs(server, admin, 2, num_training_steps=STEPS, eval_every_steps=40)
    from mlflow.tracking import MlflowClient

    MlflowClient(settings.mlflow_tracking_uri).search_experiments()  # the store's tables first
    workers = [
        worker(server.url, tokens["worker"], settings.mlflow_tracking_uri, tmp_path, name, "--once")
        for name in ("w1", "w2")
    ]
    downtimes, steps = [], [0 for _ in runs]
    for n, sig in enumerate((signal.SIGTERM, signal.SIGKILL), start=1):
        # Trained further since the last restart: a renewal was accepted by the new processes.
        steps = wait_progress(server, admin, runs, [s + 1 for s in steps])
        assert n > 1 or max(steps) < STEPS / 2, f"trained too fast for the test: {steps}"
        failures, since = _heartbeat_failures(workers), time.monotonic()
        _down(server, sig)
        # Down until a heartbeat has failed (at most one beat interval), then up again.
        _wait_failed_beat(workers, failures)
        server = start_server(env, logs / f"server-{n}.log", port=port)
        downtimes.append(elapsed(since))

    results = [wait_succeeded(server, admin, r, *workers) for r in runs]
    for proc in workers:
        assert proc.wait(60) == 0, proc.output()
    for run in results:
        assert_one_result(run, settings.mlflow_tracking_uri)
        assert sum(reported(w, run["id"]) for w in workers) == 1
    assert sorted(r["worker"] for r in results) == ["w1", "w2"]  # each kept the run it claimed
    print(f"service down {downtimes} s (SIGTERM, SIGKILL); runs {runs} succeeded once each")
