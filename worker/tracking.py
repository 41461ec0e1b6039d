"""Where a run's params, metrics and artifacts go: the Tracker protocol and MLflow.

`MlflowTracker` talks to `MlflowClient` directly (no `mlflow.start_run` global state), buffers
metrics and sends them with `log_batch`, never one call per value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value
PARAMS_PER_CALL = 100  # MLflow's limit on params (or tags) per log_batch
METRICS_PER_CALL = 1000  # MLflow's limit on metrics per log_batch
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")


class Tracker(Protocol):
    """One tracked run at a time: start, log, end."""

    def start(
        self, experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
    ) -> str:
        """Open a run in `experiment` (created if missing); returns its run id."""
        ...

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer `metrics` at `step`; sent on `flush` or when the buffer is due."""
        ...

    def flush(self) -> None:
        """Send every buffered metric."""
        ...

    def log_artifact_text(self, text: str, artifact_file: str) -> None:
        """Store `text` as the artifact `artifact_file`."""
        ...

    def log_artifact_dir(self, local_dir: Path, artifact_path: str) -> None:
        """Store the files under `local_dir` as the artifact folder `artifact_path`."""
        ...

    def load_checkpoint(self, run_id: str, dst: Path) -> Path:
        """Download the `checkpoint` artifact of an earlier run into `dst`."""
        ...

    def end(self, status: str) -> None:
        """Flush and close the run as FINISHED, FAILED or KILLED."""
        ...


def _stringify(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text[:MAX_PARAM_LENGTH]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _as_uri(location: str) -> str:
    """Local paths become file URIs; anything with a scheme stays as it is."""
    if "://" in location or location.startswith("mlflow-artifacts:"):
        return location
    return Path(location).expanduser().resolve().as_uri()


class MlflowTracker:
    """A Tracker on an MLflow tracking store (SQLite, PostgreSQL or an MLflow server)."""

    def __init__(
        self,
        tracking_uri: str,
        artifact_root: str | None = None,
        flush_every_s: float = 5.0,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.flush_every_s = flush_every_s
        self.client = MlflowClient(tracking_uri)
        self.run_id: str | None = None
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()

    def experiment_id(self, name: str) -> str:
        """The id of experiment `name`, created if missing; safe when two workers race."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = None
            if self.artifact_root:
                location = f"{_as_uri(self.artifact_root).rstrip('/')}/{name}"
            try:
                return str(self.client.create_experiment(name, artifact_location=location))
            except MlflowException:
                # Another worker created it between our get and our create.
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    def start(
        self, experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
    ) -> str:
        """Open a run with its tags and params (params sent 100 to a call)."""
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id(experiment),
            run_name=run_name,
            tags={k: _stringify(v) for k, v in tags.items()},
        )
        self.run_id = run.info.run_id
        self._buffer = []
        self._last_flush = time.monotonic()
        entries = [Param(k, _stringify(v)) for k, v in sorted(params.items())]
        for chunk in _chunks(entries, PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=chunk)
        return self.run_id

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer; flush when the buffer holds a full call or `flush_every_s` passed."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._buffer.extend(Metric(k, float(v), stamp, step) for k, v in metrics.items())
        due = time.monotonic() - self._last_flush >= self.flush_every_s
        if len(self._buffer) >= METRICS_PER_CALL or due:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics, at most 1000 to a `log_batch` call."""
        buffer, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        for chunk in _chunks(buffer, METRICS_PER_CALL):
            self.client.log_batch(self._require_run(), metrics=chunk)

    def log_artifact_text(self, text: str, artifact_file: str) -> None:
        """Store `text` as `artifact_file` in the run's artifacts."""
        self.client.log_text(self._require_run(), text, artifact_file)

    def log_artifact_dir(self, local_dir: Path, artifact_path: str) -> None:
        """Store the files under `local_dir` as `artifact_path`."""
        self.client.log_artifacts(self._require_run(), str(local_dir), artifact_path)

    def load_checkpoint(self, run_id: str, dst: Path) -> Path:
        """Download run `run_id`'s `checkpoint` artifact under `dst`."""
        return load_checkpoint(self.tracking_uri, run_id, dst)

    def end(self, status: str) -> None:
        """Flush what is buffered (best effort when failing) and set the run's status."""
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown MLflow run status {status!r}")
        run_id = self._require_run()
        try:
            self.flush()
        except Exception:
            if status == "FINISHED":
                raise
            log.exception("could not flush metrics of MLflow run %s", run_id)
        self.client.set_terminated(run_id, status)
        self.run_id = None

    def _require_run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("no MLflow run is open: call start() first")
        return self.run_id


def load_checkpoint(tracking_uri: str, mlflow_run_id: str, dst: Path | None = None) -> Path:
    """Download the `checkpoint` artifact of `mlflow_run_id`; returns the local folder."""
    from mlflow.tracking import MlflowClient

    if dst is not None:
        dst.mkdir(parents=True, exist_ok=True)
    local = MlflowClient(tracking_uri).download_artifacts(
        mlflow_run_id, "checkpoint", str(dst) if dst is not None else None
    )
    return Path(local)


class NullTracker:
    """A Tracker that keeps metrics in memory and stores nothing: for benchmarks and dry runs."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, str, float]] = []
        self.run_id = "null"

    def start(
        self, experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
    ) -> str:
        """Returns a fixed run id."""
        return self.run_id

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Keep the values in memory."""
        self.metrics.extend((step, k, float(v)) for k, v in metrics.items())

    def flush(self) -> None:
        """Nothing to send."""

    def log_artifact_text(self, text: str, artifact_file: str) -> None:
        """Dropped."""

    def log_artifact_dir(self, local_dir: Path, artifact_path: str) -> None:
        """Dropped."""

    def load_checkpoint(self, run_id: str, dst: Path) -> Path:
        """A NullTracker stores no checkpoints."""
        raise FileNotFoundError(f"NullTracker has no checkpoint for run {run_id}")

    def end(self, status: str) -> None:
        """Nothing to close."""
