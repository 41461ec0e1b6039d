"""MlflowTracker against a real SQLite store: experiments, batching, artifacts, statuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from worker.provenance import code_version, collect, device_name
from worker.tracking import NullTracker, load_checkpoint


class CountingClient:
    """Wraps MlflowClient and counts log_batch calls and sizes."""

    def __init__(self, client: MlflowClient) -> None:
        self.client, self.batches = client, []

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.batches.append((len(metrics), len(params)))
        return self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_params_and_metrics_are_batched(tracker_factory) -> None:
    tracker = tracker_factory()
    counting = CountingClient(tracker.client)
    tracker.client = counting
    params = {f"p{i:03d}": i for i in range(250)} | {"long": "x" * 7000, "none": None}
    run_id = tracker.start("batching", "r", {"registry.config": "batching"}, params)
    assert counting.batches == [(0, 100), (0, 100), (0, 52)]
    counting.batches.clear()
    for step in range(1, 1201):
        tracker.log_metrics(step, {"a": step * 0.5, "b": 1.0})
    tracker.end("FINISHED")
    assert counting.batches == [(1000, 0), (1000, 0), (400, 0)]
    run = MlflowClient(tracker.tracking_uri).get_run(run_id)
    assert run.info.status == "FINISHED" and len(run.data.params["long"]) == 6000
    assert run.data.params["none"] == "null" and run.data.tags["registry.config"] == "batching"
    history = MlflowClient(tracker.tracking_uri).get_metric_history(run_id, "a")
    assert [m.step for m in history] == list(range(1, 1201)) and history[-1].value == 600.0


def test_experiment_creation_survives_a_race(tracker_factory, monkeypatch) -> None:
    first, second = tracker_factory(), tracker_factory()
    real_get = second.client.get_experiment_by_name
    calls = {"n": 0}

    def stale_get(name):
        calls["n"] += 1
        return None if calls["n"] == 1 else real_get(name)  # first look misses the creation

    exp_id = first.experiment_id("raced")
    monkeypatch.setattr(second.client, "get_experiment_by_name", stale_get)
    assert second.experiment_id("raced") == exp_id


def test_deleted_experiment_is_restored(tracker_factory) -> None:
    tracker = tracker_factory()
    exp_id = tracker.experiment_id("deleted-once")
    tracker.client.delete_experiment(exp_id)
    assert tracker.experiment_id("deleted-once") == exp_id
    assert tracker.client.get_experiment(exp_id).lifecycle_stage == "active"


def test_artifacts_checkpoint_round_trip_and_statuses(tracker_factory, tmp_path: Path) -> None:
    tracker = tracker_factory()
    run_id = tracker.start("artifacts", "r", {}, {})
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "weights.bin").write_bytes(b"\x00\x01")
    tracker.log_artifact_dir(tmp_path / "ckpt", "checkpoint")
    tracker.log_artifact_text("hello", "samples.txt")
    tracker.end("KILLED")
    local = load_checkpoint(tracker.tracking_uri, run_id, tmp_path / "down")
    assert (local / "weights.bin").read_bytes() == b"\x00\x01"
    assert MlflowClient(tracker.tracking_uri).get_run(run_id).info.status == "KILLED"
    with pytest.raises(ValueError, match="status"):
        tracker.start("artifacts", "r2", {}, {})
        tracker.end("DONE")


def test_artifacts_land_under_the_artifact_root(tracker_factory, mlflow_store) -> None:
    tracker = tracker_factory()
    run_id = tracker.start("rooted", "r", {}, {})
    tracker.end("FINISHED")
    uri = MlflowClient(tracker.tracking_uri).get_run(run_id).info.artifact_uri
    assert uri.startswith(Path(mlflow_store[1]).resolve().as_uri() + "/rooted/")


def test_null_tracker_keeps_metrics_in_memory() -> None:
    tracker = NullTracker()
    tracker.start("e", "r", {}, {})
    tracker.log_metrics(3, {"x": 1})
    tracker.end("FINISHED")
    assert tracker.metrics == [(3, "x", 1.0)]


def test_provenance_names_code_and_device() -> None:
    from tests.support.worker import tiny_doc

    prov = collect(tiny_doc(), "abc", "cpu", 7)
    assert prov["seed"] == 7 and prov["dataset_sha256"] == "abc" and prov["device"] == "cpu"
    assert prov["code_version"].startswith(code_version()["code_version"].split("+")[0])
    assert device_name("cpu") == "cpu"
