"""MLflow runs of lost attempts are not left RUNNING: the in-flight marker a killed daemon left
in its state folder makes its restarted successor mark that MLflow run KILLED (a real MLflow
SQLite store); a run that ended is left as it is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.worker import make_job
from worker.lost import InFlight


def _start(tracker: Any, run_id: int) -> str:
    tags = {"registry.run_id": str(run_id), "registry.attempt": "1"}
    return str(tracker.start("lost", f"lost-{run_id}", tags, {}))


def test_a_marker_left_by_a_dead_daemon_gets_its_mlflow_run_killed_at_restart(
    tracker_factory: Callable[[], Any], tmp_path: Path
) -> None:
    tracker = tracker_factory()
    mlflow_run_id = _start(tracker, 41)
    seen: list[dict[str, Any]] = []
    progress = InFlight(tmp_path).watch(make_job({}, run_id=41), seen.append)
    progress({"phase": "started", "mlflow_run_id": mlflow_run_id})
    assert seen == [{"phase": "started", "mlflow_run_id": mlflow_run_id}]
    # kill -9 here: nothing ends the MLflow run, the marker stays on disk.
    assert tracker.client.get_run(mlflow_run_id).info.status == "RUNNING"

    restarted = InFlight(tmp_path)
    assert restarted.close_orphan(tracker_factory()) == mlflow_run_id
    assert tracker.client.get_run(mlflow_run_id).info.status == "KILLED"
    assert not restarted.path.exists()
    assert restarted.close_orphan(tracker) is None  # nothing left to close


def test_a_run_that_ended_is_left_alone_and_a_broken_marker_is_dropped(
    tracker_factory: Callable[[], Any], tmp_path: Path
) -> None:
    tracker = tracker_factory()
    mlflow_run_id = _start(tracker, 42)
    tracker.end("FINISHED")
    marker = InFlight(tmp_path)
    marker.record(make_job({}, run_id=42), mlflow_run_id)  # died after execute ended it
    assert marker.close_orphan(tracker) is None
    assert tracker.client.get_run(mlflow_run_id).info.status == "FINISHED"
    marker.path.write_text("{not json", encoding="utf-8")
    assert marker.close_orphan(tracker) is None and not marker.path.exists()
