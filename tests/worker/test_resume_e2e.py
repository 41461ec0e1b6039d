"""kill -9 of a real `registry-worker` after its run's first checkpoint: another worker
finishes the run as attempt 2 from that checkpoint, with the metrics of the same run trained
without a break (real `registry serve`, real worker processes, a real MLflow store)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.settings import Settings
from tests.support.procs import Proc, Server, start_server, start_worker, wait_for
from worker.tracking import CHECKPOINT_STEP_TAG

pytestmark = pytest.mark.slow

TRAINING = {"num_training_steps": 80, "eval_every_steps": 40, "checkpoint_every_steps": 10}
MEASURED = {"tokens_per_second", "peak_memory_mb"}
RUN_TIMEOUT = 300
LEASE_S = 3


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[Server]:
    env = {"DATABASE_URL": settings.database_url, "REGISTRY_LEASE_SECONDS": str(LEASE_S)}
    started = start_server(env, tmp_path / "logs" / "server.log")
    yield started
    started.proc.stop()


def _worker(server: Server, settings: Settings, token: str, tmp: Path, name: str, *a: str) -> Proc:
    env = {
        "REGISTRY_URL": server.url,
        "REGISTRY_TOKEN": token,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
        "HF_HUB_OFFLINE": "1",
    }
    args = ("--name", name, "--poll-max", "1", *a)
    return start_worker(env, tmp / "logs" / f"{name}.log", *args, state_dir=tmp / f"s-{name}")


def _queue(server: Server, token: str) -> dict[str, Any]:
    answer = server.post("/runs", token, {"config": "tiny", "force": True})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _mlflow(settings: Settings) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.mlflow_tracking_uri)


def _checkpointed(settings: Settings, run_id: int) -> int | None:
    client = _mlflow(settings)
    experiment = client.get_experiment_by_name("tiny")
    if experiment is None:
        return None
    found = client.search_runs([experiment.experiment_id], f"tags.`registry.run_id` = '{run_id}'")
    steps = [
        int(r.data.tags[CHECKPOINT_STEP_TAG]) for r in found if CHECKPOINT_STEP_TAG in r.data.tags
    ]
    return max(steps, default=None)


def _succeeded(server: Server, token: str, run_id: int, proc: Proc) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = server.get(f"/runs/{run_id}", token).json()
        assert run["status"] in ("queued", "running", "succeeded"), (run, proc.output())
        return run if run["status"] == "succeeded" else None

    return wait_for(done, RUN_TIMEOUT, f"run {run_id} to succeed", poll=0.3)  # type: ignore[no-any-return]


def test_kill_9_after_a_checkpoint_is_finished_from_it_as_attempt_2(
    server: Server, settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    admin = tokens["admin"]
    doc = server.get("/presets/tiny-cpu", admin).json()
    doc["training"].update(TRAINING)
    created = server.post("/configs", admin, {"name": "tiny", "config": doc})
    assert created.status_code == 201, created.text
    killed_run = _queue(server, admin)
    _mlflow(settings).search_experiments()  # the store's tables, made before any worker races
    first = _worker(server, settings, tokens["worker"], tmp_path, "w1")
    step = wait_for(lambda: _checkpointed(settings, killed_run["id"]), RUN_TIMEOUT, "a checkpoint")
    os.kill(first.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    first.wait(30)

    def requeued() -> bool:  # by the service's reaper: no other worker runs yet
        return server.get(f"/runs/{killed_run['id']}", admin).json()["status"] == "queued"

    wait_for(requeued, LEASE_S + 10, "the killed run queued again (lease + 10 s)")
    print(f"queued again {time.monotonic() - killed_at:.1f}s after kill -9 (lease {LEASE_S}s)")
    whole_run = _queue(server, admin)
    second = _worker(server, settings, tokens["worker"], tmp_path, "w2", "--max-runs", "2")
    resumed = _succeeded(server, admin, killed_run["id"], second)
    whole = _succeeded(server, admin, whole_run["id"], second)
    assert second.wait(60) == 0

    assert (resumed["attempt"], resumed["worker"]) == (2, "w2")
    assert resumed["provenance"]["resumed_from"]["attempt"] == 1
    assert resumed["provenance"]["resumed_from"]["step"] >= step
    assert whole["provenance"]["resumed_from"] is None
    keys = whole["metrics"].keys() - MEASURED
    assert {"train_loss", "val_loss"} <= keys
    assert {k: resumed["metrics"][k] for k in keys} == {k: whole["metrics"][k] for k in keys}
    # The dead attempt's MLflow run is not left RUNNING (the next attempt's worker ends it).
    experiment = _mlflow(settings).get_experiment_by_name("tiny").experiment_id
    found = _mlflow(settings).search_runs(
        [experiment], f"tags.`registry.run_id` = '{killed_run['id']}'"
    )
    attempts = sorted((r.data.tags["registry.attempt"], r.info.status) for r in found)
    assert attempts == [("1", "KILLED"), ("2", "FINISHED")]
