"""kill -9 of a real training process after its checkpoint: the next attempt resumes there and
ends bit-identical to the same run trained without a break (CONTRACT 5.3, issue 10 item 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.support.worker import make_job, tiny_doc
from worker.execute import execute
from worker.tracking import CHECKPOINT_STEP_TAG, MlflowTracker

TRAINING = {"num_training_steps": 12, "eval_every_steps": 6, "checkpoint_every_steps": 3}
MEASURED = {"tokens_per_second", "peak_memory_mb"}

#: attempt 1 in its own process, slowed to about 0.3 s a step so the kill lands mid-run.
_CHILD = """
import json, sys, time
from pathlib import Path
from tests.support.worker import make_job, tiny_doc
from worker.execute import execute
from worker.tracking import MlflowTracker
uri, root, workdir, training = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
job = make_job(tiny_doc(training=training), run_id=702, name="resume-kill")
def should_stop():
    time.sleep(0.3)
    return False
execute(job, MlflowTracker(uri, root), "cpu", should_stop, lambda _: None, Path(workdir))
print("FINISHED")
"""


def _quiet(_: dict[str, Any]) -> None:
    """on_progress that keeps nothing."""


def _job(run_id: int, attempt: int) -> dict[str, Any]:
    job = make_job(tiny_doc(training=TRAINING), run_id=run_id, name="resume-kill")
    job["run"]["attempt"] = attempt
    return job


def _checkpoint_step(client: MlflowClient) -> int | None:
    experiment = client.get_experiment_by_name("resume-kill")
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], "tags.`registry.run_id` = '702'")
    steps = [
        int(r.data.tags[CHECKPOINT_STEP_TAG]) for r in runs if CHECKPOINT_STEP_TAG in r.data.tags
    ]
    return max(steps, default=None)


def _kill_after_checkpoint(child: subprocess.Popen[str], client: MlflowClient) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        try:
            step = _checkpoint_step(client)
        except Exception:  # SQLite busy while the child writes: ask again
            step = None
        if step is not None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
            return step
        time.sleep(0.05)
    child.kill()
    raise AssertionError(f"no checkpoint before the child ended: {child.communicate()}")


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_resumes_bit_identical(mlflow_store, tmp_path: Path) -> None:
    uri, root = mlflow_store
    client = MlflowClient(uri)
    client.search_experiments()  # the store's tables, made before the child could race us
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, uri, root, str(tmp_path / "a1"), json.dumps(TRAINING)],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed_at = _kill_after_checkpoint(child, client)
    assert child.returncode == -signal.SIGKILL and killed_at < TRAINING["num_training_steps"]

    whole = execute(_job(701, 1), MlflowTracker(uri, root), "cpu", lambda: False, _quiet, tmp_path)
    resumed = execute(
        _job(702, 2), MlflowTracker(uri, root), "cpu", lambda: False, _quiet, tmp_path / "a2"
    )
    assert resumed.provenance["resumed_from"]["attempt"] == 1
    assert resumed.provenance["resumed_from"]["step"] >= killed_at
    keys = whole.metrics.keys() - MEASURED
    assert {k: resumed.metrics[k] for k in keys} == {k: whole.metrics[k] for k in keys}
    for key in ("train_loss", "learning_rate", "grad_norm", "val_loss"):
        got = [(m.step, m.value) for m in client.get_metric_history(resumed.mlflow_run_id, key)]
        want = [(m.step, m.value) for m in client.get_metric_history(whole.mlflow_run_id, key)]
        assert got == want, key
