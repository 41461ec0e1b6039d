"""MLflow runs of lost attempts: a worker killed with ``kill -9`` (or cut off by the OOM killer,
a power cut) leaves its MLflow run RUNNING, since MLflow never ends a run whose process died.
Two workers close them, whichever comes first:

- the worker that claims the run's next attempt marks the earlier attempts' RUNNING MLflow runs
  KILLED (:func:`close_earlier_attempts`; it finds them by the tag ``registry.run_id``);
- the daemon restarted on the same state folder (systemd's ``Restart=``) marks KILLED the MLflow
  run its dead predecessor was writing (:class:`InFlight`, ``<state-dir>/in-flight.json``, on
  disk while a run executes). This also covers a run's last attempt, which no one claims again
  (three lost attempts: the run is ``failed``, "worker lost").

Tidying never costs a run: any MLflow error is logged and the work goes on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("worker")

#: Marks an MLflow run whose worker died.
KILLED = "KILLED"


def close_earlier_attempts(tracker: Any, job: Mapping[str, Any]) -> None:
    """Mark KILLED the MLflow runs of this run's earlier attempts that are still RUNNING."""
    client = getattr(tracker, "client", None)
    run, attempt = job["run"], int(job["run"].get("attempt") or 1)
    if client is None or attempt <= 1:
        return
    try:
        experiment = client.get_experiment_by_name(str(run["config"]))
        if experiment is None:
            return
        found = client.search_runs(
            [experiment.experiment_id],
            f"tags.`registry.run_id` = '{int(run['id'])}' AND attributes.status = 'RUNNING'",
        )
        for orphan in found:
            if orphan.data.tags.get("registry.attempt") != str(attempt):
                client.set_terminated(orphan.info.run_id, KILLED)
                log.info(
                    "run=%s: MLflow run %s of an earlier attempt marked KILLED",
                    run["id"],
                    orphan.info.run_id,
                )
    except Exception:  # tidying must never cost the run itself
        log.warning("run=%s: could not tidy earlier MLflow runs", run["id"], exc_info=True)


class InFlight:
    """``<state-dir>/in-flight.json``: the run and MLflow run this daemon is executing.

    Written (atomically) once the MLflow run exists, removed when ``execute`` returned or
    raised (it ended the MLflow run itself then). A file found at start-up is a predecessor's
    that died mid-run: :meth:`close_orphan` marks its MLflow run KILLED if still RUNNING.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "in-flight.json"
        self._written: str | None = None

    def watch(self, job: Mapping[str, Any], on_progress: Callable[[dict[str, Any]], None]) -> Any:
        """``on_progress`` that also records the MLflow run id the first time it appears."""

        def progress(info: dict[str, Any]) -> None:
            mlflow_run_id = info.get("mlflow_run_id")
            if mlflow_run_id and mlflow_run_id != self._written:
                self.record(job, str(mlflow_run_id))
            on_progress(info)

        return progress

    def record(self, job: Mapping[str, Any], mlflow_run_id: str) -> None:
        run = job["run"]
        entry = {"run": run["id"], "attempt": run.get("attempt"), "mlflow_run_id": mlflow_run_id}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(entry) + "\n", encoding="utf-8")
            os.replace(partial, self.path)
            self._written = mlflow_run_id
        except OSError:
            log.warning("could not write %s", self.path, exc_info=True)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._written = None

    def close_orphan(self, tracker: Any) -> str | None:
        """Mark KILLED the MLflow run a dead predecessor left RUNNING; its id, or None."""
        client = getattr(tracker, "client", None)
        try:
            entry = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("unreadable %s; removed", self.path)
            self.clear()
            return None
        closed = None
        try:
            orphan = str(entry["mlflow_run_id"])
            if client is not None and client.get_run(orphan).info.status == "RUNNING":
                client.set_terminated(orphan, KILLED)
                closed = orphan
                log.info(
                    "run=%s attempt=%s: MLflow run %s left RUNNING by a dead worker: KILLED",
                    entry.get("run"),
                    entry.get("attempt"),
                    orphan,
                )
        except Exception:  # tidying must never stop the daemon
            log.warning("could not close the MLflow run in %s", self.path, exc_info=True)
        self.clear()
        return closed
