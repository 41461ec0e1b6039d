"""Checkpoints and resume (CONTRACT 5.3): a run stopped or crashed mid-way and resumed by a
later attempt ends bit-identical to the same run trained without a break, on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.support.worker import make_job, splits_of, tiny_doc
from worker import checkpoint
from worker.execute import Result, Stopped, execute
from worker.model import build_model
from worker.tracking import NullTracker
from worker.training import TrainParams, train

#: Not determined by the data and the seed: wall time and memory.
MEASURED = {"tokens_per_second", "peak_memory_mb"}
STEPS, EVERY = 8, 3


class Crash(RuntimeError):
    """Stands for a worker that dies: no warm stop, no checkpoint of its own."""


def _doc() -> dict[str, Any]:
    return tiny_doc(
        training={
            "num_training_steps": STEPS,
            "eval_every_steps": 4,
            "checkpoint_every_steps": EVERY,
        }
    )


def _job(run_id: int, attempt: int) -> dict[str, Any]:
    job = make_job(_doc(), run_id=run_id, name="resume")
    job["run"]["attempt"] = attempt
    return job


def _stop_at(step: int, exc: type[Exception], first: int = 1) -> Callable[[], bool]:
    """should_stop that ends an attempt starting at step `first` before `step` trains (it is
    asked twice, between phases, before the loop asks once a step)."""
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        if calls["n"] >= 2 + step - first + 1:
            if exc is Stopped:
                return True
            raise exc(f"died before step {step}")
        return False

    return should_stop


def _attempt(tracker: Any, run_id: int, attempt: int, tmp: Path, stop: Any = None) -> Any:
    seen: list[dict[str, Any]] = []
    should_stop = stop if stop is not None else (lambda: False)
    try:
        return execute(_job(run_id, attempt), tracker, "cpu", should_stop, seen.append, tmp), seen
    except (Stopped, Crash) as exc:
        return exc, seen


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_a_crashed_then_stopped_run_resumes_bit_identical(tracker_factory, tmp_path) -> None:
    whole, _ = _attempt(tracker_factory(), 501, 1, tmp_path / "whole")
    assert isinstance(whole, Result)

    crashed, _ = _attempt(tracker_factory(), 502, 1, tmp_path / "a1", _stop_at(5, Crash))
    assert isinstance(crashed, Crash)  # a periodic checkpoint at step 3, none at the crash
    stopped, seen = _attempt(
        tracker_factory(), 502, 2, tmp_path / "a2", _stop_at(8, Stopped, first=4)
    )
    assert isinstance(stopped, Stopped)  # resumed at 4, periodic at 6, a warm stop at 7
    assert {k: v for k, v in seen[1].items() if k != "mlflow_run_id"} == {
        "phase": "resumed",
        "attempt": 1,
        "step": 3,
    }
    final, _ = _attempt(tracker_factory(), 502, 3, tmp_path / "a3")
    assert isinstance(final, Result)
    assert final.provenance["resumed_from"] == {"attempt": 2, "step": 7}
    assert whole.provenance["resumed_from"] is None

    keys = whole.metrics.keys() - MEASURED
    assert keys >= {"train_loss", "val_loss", "val_accuracy", "learning_rate", "gen_distinct_2"}
    assert {k: final.metrics[k] for k in keys} == {k: whole.metrics[k] for k in keys}
    client = MlflowClient(tracker_factory().tracking_uri)
    for key in ("train_loss", "learning_rate", "grad_norm", "val_loss"):
        expected = _history(client, whole.mlflow_run_id, key)
        assert _history(client, final.mlflow_run_id, key) == expected, key
    assert [s for s, _ in _history(client, final.mlflow_run_id, "train_loss")] == list(
        range(1, STEPS + 1)
    )
    tags = [client.get_run(e.mlflow_run_id).data.tags for e in (crashed, stopped)]
    assert [t[checkpoint.CHECKPOINT_STEP_TAG] for t in tags] == ["3", "7"]
    kept = [a.path for a in client.list_artifacts(stopped.mlflow_run_id, "resume")]
    assert kept == ["resume/step-000000007.pt"]  # the attempt's older checkpoint is deleted


def test_a_checkpoint_describes_itself_and_refuses_another_run(tracker_factory, tmp_path) -> None:
    stopped, _ = _attempt(tracker_factory(), 503, 1, tmp_path / "a1", _stop_at(3, Stopped))
    assert isinstance(stopped, Stopped)
    client = MlflowClient(tracker_factory().tracking_uri)
    local = client.download_artifacts(
        stopped.mlflow_run_id, "resume/step-000000002.pt", str(tmp_path)
    )
    state = checkpoint.load(Path(local), _job(503, 2))
    assert state["step"] == 2 and state["batches_drawn"] == 2
    assert state["identity"]["registry_run_id"] == 503 and state["identity"]["attempt"] == 1
    assert state["identity"]["document"] == _doc()
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "last"} <= state.keys()
    assert isinstance(state["rng"]["data"], torch.Tensor)
    with pytest.raises(checkpoint.CheckpointMismatch, match="another run"):
        checkpoint.load(Path(local), _job(504, 2))
    other = tiny_doc(training={"num_training_steps": STEPS, "seed": 7})
    with pytest.raises(checkpoint.CheckpointMismatch, match="config_hash"):
        checkpoint.load(Path(local), make_job(other, run_id=503, name="resume"))


def test_the_default_interval_keeps_small_runs_free_of_checkpoints() -> None:
    assert checkpoint.interval(tiny_doc()) == 1000
    assert checkpoint.interval(_doc()) == EVERY


class _FailingStore(NullTracker):
    """A tracker whose artifact store is down."""

    def log_artifact_file(self, local_file: Path, artifact_dir: str) -> None:
        raise ConnectionError("artifact store down")


def test_a_store_that_fails_costs_the_checkpoint_not_the_run(tmp_path: Path) -> None:
    doc = tiny_doc(training={"num_training_steps": 4, "checkpoint_every_steps": 1})
    model = build_model(doc, 259)
    cp = checkpoint.Checkpointer(_FailingStore(), 1, tmp_path, checkpoint.identity(make_job(doc)))
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Stopped):  # the warm stop stays a warm stop
        train(
            model,
            splits_of(doc),
            TrainParams.from_doc(doc),
            "cpu",
            NullTracker(),
            should_stop,
            None,
            cp,
        )
    assert cp.saved_step == 0 and cp.artifact is None
