"""The MLflow tracking server down for a while during a run: a real ``mlflow server`` (served
artifacts) that a real ``registry-worker`` logs to over HTTP is stopped mid-run and started again
on the same port. Training goes on while it is down (the metrics wait in the worker's buffer),
the run succeeds once, and its whole per-step history is in MLflow at the end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.dbs import migrate
from tests.support.livestack import (
    assert_one_result,
    elapsed,
    make_tokens,
    queue_tiny_runs,
    reported,
    wait_progress,
    wait_succeeded,
    worker,
)
from tests.support.mlflowserver import refused, start_mlflow
from tests.support.procs import Server, free_port, start_server

pytestmark = pytest.mark.slow

STEPS = 120
LEASE_S = 9  # beats (and the progress they carry) every 3 s
PER_STEP = ("train_loss", "learning_rate", "grad_norm")


def _trained(server: Server, token: str, run_id: int) -> int:
    """Steps trained, as the last heartbeat told the service (STEPS once past training)."""
    run = server.get(f"/runs/{run_id}", token).json()
    assert run["status"] in ("running", "succeeded"), run
    progress = run.get("progress") or {}
    if run["status"] == "succeeded" or progress.get("phase") in ("sampling", "checkpoint"):
        return STEPS
    return int(progress.get("step") or 0)


def test_metrics_logged_while_mlflow_is_down_arrive_and_the_run_succeeds(tmp_path: Path) -> None:
    port, logs = free_port(), tmp_path / "logs"
    tracking = f"http://127.0.0.1:{port}"
    mlflow = start_mlflow(tmp_path / "mlflow", port, logs / "mlflow-0.log")
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate(url)
    tokens = make_tokens(url)
    server = start_server(
        {"DATABASE_URL": url, "REGISTRY_LEASE_SECONDS": str(LEASE_S)}, logs / "s.log"
    )
    admin = tokens["admin"]
    [run_id] = queue_tiny_runs(server, admin, 1, num_training_steps=STEPS, eval_every_steps=60)
    # No MLFLOW_ARTIFACT_ROOT: artifacts go through the server (--serve-artifacts) too.
    proc = worker(
        server.url, tokens["worker"], tracking, tmp_path, "w1", "--once", MLFLOW_ARTIFACT_ROOT=""
    )

    wait_progress(server, admin, [run_id], [2])
    mlflow.stop()
    assert refused(port)
    stopped = time.monotonic()
    at_stop = _trained(server, admin, run_id)
    time.sleep(8)  # longer than the tracker's 5 s between sends: the old one blocked here
    at_8s = _trained(server, admin, run_id)
    mlflow = start_mlflow(tmp_path / "mlflow", port, logs / "mlflow-1.log")
    down_s, back = elapsed(stopped), time.monotonic()
    at_back = _trained(server, admin, run_id)
    assert at_back > at_8s or at_back == STEPS, (at_stop, at_8s, at_back)  # it kept training

    run = wait_succeeded(server, admin, run_id, proc)
    done_s = elapsed(back)
    assert proc.wait(60) == 0, proc.output()
    assert reported(proc, run_id) == 1
    assert_one_result(run, tracking)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking)
    for key in PER_STEP:
        history = client.get_metric_history(run["mlflow_run_id"], key)
        assert sorted(m.step for m in history) == list(range(1, STEPS + 1)), key
    evals = client.get_metric_history(run["mlflow_run_id"], "val_loss")
    assert sorted(m.step for m in evals) == [60, 120]
    artifacts = {f.path for f in client.list_artifacts(run["mlflow_run_id"])}
    assert {"checkpoint", "samples.txt", "config.yaml"} <= artifacts
    print(
        f"MLflow down {down_s} s; trained steps {at_stop} -> {at_8s} -> {at_back} meanwhile; "
        f"the run succeeded {done_s} s after it was back, its history complete"
    )
