"""Every service process restarted while workers train: ``registry serve`` stopped with SIGTERM
while two real ``registry-worker``s train two runs, then killed with SIGKILL while they train the
next two, each time started again on the same port. The workers keep training (their calls fail
meanwhile and are retried) and deliver: each run succeeds once, as attempt 1 (SQLite and
PostgreSQL)."""

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
    failed_calls,
    queue_runs,
    queue_tiny_runs,
    reported,
    wait_started,
    wait_succeeded,
    worker,
)
from tests.support.procs import Server, free_port, start_server, wait_for

pytestmark = pytest.mark.slow

#: Beats go every third of the lease (30 s). A restart here takes 5-25 s (SIGTERM lets gunicorn
#: finish for up to 10 s, then a loaded machine imports the app again) and the test waits for a
#: call to fail first, so it costs at most one beat: the next one, well inside the lease, is
#: accepted and no worker stops its run (self-fencing).
LEASE_S = 90
#: Long enough that a run is still training when the service goes down: 40 steps took 1-3 s
#: on a quiet machine, so a batch finished before the test could restart mid-run (and the
#: next batch before the test saw both of its runs running).
STEPS = 300


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
    runs = queue_tiny_runs(server, admin, 2, num_training_steps=STEPS, eval_every_steps=20)
    from mlflow.tracking import MlflowClient

    MlflowClient(settings.mlflow_tracking_uri).search_experiments()  # the store's tables first
    workers = [
        worker(server.url, tokens["worker"], settings.mlflow_tracking_uri, tmp_path, name, *a)
        for name, a in (("w1", ("--max-runs", "2")), ("w2", ("--max-runs", "2")))
    ]
    downtimes = []
    for n, sig in enumerate((signal.SIGTERM, signal.SIGKILL), start=1):
        batch = runs[-2:]
        wait_started(server, admin, batch)  # both workers are training a run of this batch
        failures, since = failed_calls(workers), time.monotonic()
        _down(server, sig)
        wait_for(lambda f=failures: failed_calls(workers) > f, LEASE_S / 3 + 15, "a failed call")  # type: ignore[misc]
        server = start_server(env, logs / f"server-{n}.log", port=port)
        downtimes.append(elapsed(since))
        if n == 1:
            runs += queue_runs(server, admin, 2)

    results = [wait_succeeded(server, admin, r, *workers) for r in runs]
    for proc in workers:
        assert proc.wait(60) == 0, proc.output()
    for run in results:
        assert_one_result(run, settings.mlflow_tracking_uri)
        assert sum(reported(w, run["id"]) for w in workers) == 1
    assert "self-fencing" not in "".join(w.output() for w in workers)
    print(f"service down {downtimes} s (SIGTERM, SIGKILL); runs {runs} succeeded once each")
