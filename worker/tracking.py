"""Where a run's params, metrics and artifacts go: the Tracker protocol and MLflow.

`MlflowTracker` talks to `MlflowClient` directly (no `mlflow.start_run` global state). Metrics
go through a `MetricBuffer` (worker.metricbuffer): sent with `log_batch` by a thread of their own,
never one call per value, and kept and retried while the tracking server is down, so that an
outage costs training no time and the run's history nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from worker.metricbuffer import MetricBuffer, TrackingUnavailable

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000  # MLflow's limit on one param value
PARAMS_PER_CALL = 100  # MLflow's limit on params (or tags) per log_batch
METRICS_PER_CALL = 1000  # MLflow's limit on metrics per log_batch
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
#: How long a failing or stopped run's end waits for its buffered metrics to be stored.
END_WAIT_FAILED_S = 30.0
#: Tags of an MLflow run whose training-state checkpoint is fully stored (worker.checkpoint).
CHECKPOINT_PATH_TAG = "registry.checkpoint"
CHECKPOINT_STEP_TAG = "registry.checkpoint_step"


@dataclass(frozen=True)
class ResumePoint:
    """A stored training-state checkpoint of one attempt of a registry run."""

    mlflow_run_id: str
    attempt: int
    step: int
    artifact: str


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
        """Store every buffered metric; TrackingUnavailable when the tracking server does not
        take them in time (they stay buffered)."""
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

    def log_artifact_file(self, local_file: Path, artifact_dir: str) -> None:
        """Store one file under the artifact folder `artifact_dir`."""
        ...

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags on the open run."""
        ...

    def delete_artifact(self, artifact_path: str) -> None:
        """Delete an artifact of the open run where the store allows (best effort)."""
        ...

    def latest_checkpoint(
        self, experiment: str, registry_run_id: int, before_attempt: int
    ) -> ResumePoint | None:
        """The checkpoint of the highest step among attempts before `before_attempt`."""
        ...

    def download_artifact(self, run_id: str, artifact_path: str, dst: Path) -> Path:
        """Download one artifact of run `run_id` under `dst`; returns the local path."""
        ...

    def copy_history(self, run_id: str, up_to_step: int) -> None:
        """Copy run `run_id`'s metrics at steps <= `up_to_step` into the open run."""
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
        wait_s: float = 300.0,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.flush_every_s = flush_every_s
        #: How long `flush` (before a checkpoint, at the end) waits for the tracking server.
        self.wait_s = wait_s
        self.client = MlflowClient(tracking_uri)
        self.run_id: str | None = None
        self._metrics: MetricBuffer | None = None

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
        self.run_id = run_id = run.info.run_id

        def send(chunk: list[Any]) -> None:
            self.client.log_batch(run_id, metrics=chunk)

        self._metrics = MetricBuffer(send, batch=METRICS_PER_CALL, every_s=self.flush_every_s)
        entries = [Param(k, _stringify(v)) for k, v in sorted(params.items())]
        for chunk in _chunks(entries, PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=chunk)
        return self.run_id

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer (stamped now); the sender sends 1000 at a time or every `flush_every_s`."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        values = [Metric(k, float(v), stamp, step) for k, v in metrics.items()]
        self._require_metrics().add(values, self.wait_s)

    def flush(self) -> None:
        """Wait until the tracking server stored every buffered metric (up to `wait_s`)."""
        self._require_metrics().flush(self.wait_s)

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
        """Store what is buffered, then set the run's status.

        FINISHED waits up to `wait_s` for the tracking server and raises TrackingUnavailable
        (the run stays open, values buffered) rather than call a run with holes in its history
        finished; FAILED and KILLED wait `END_WAIT_FAILED_S` at most and log what is left.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"unknown MLflow run status {status!r}")
        run_id, metrics = self._require_run(), self._require_metrics()
        try:
            metrics.flush(self.wait_s if status == "FINISHED" else END_WAIT_FAILED_S)
        except TrackingUnavailable:
            if status == "FINISHED":
                raise
            log.exception("could not store the metrics of MLflow run %s", run_id)
        metrics.close()
        self.client.set_terminated(run_id, status)
        self.run_id, self._metrics = None, None

    def log_artifact_file(self, local_file: Path, artifact_dir: str) -> None:
        """Store `local_file` under `artifact_dir`."""
        self.client.log_artifact(self._require_run(), str(local_file), artifact_dir)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Tags on the open run, in one call."""
        from mlflow.entities import RunTag

        entries = [RunTag(k, _stringify(v)) for k, v in tags.items()]
        self.client.log_batch(self._require_run(), tags=entries)

    def delete_artifact(self, artifact_path: str) -> None:
        """Delete `artifact_path` of the open run; a store that cannot only logs it."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            uri = self.client.get_run(self._require_run()).info.artifact_uri
            get_artifact_repository(uri).delete_artifacts(artifact_path)
        except Exception as exc:  # an old checkpoint left behind costs only storage
            log.info("could not delete artifact %s: %s", artifact_path, exc)

    def latest_checkpoint(
        self, experiment: str, registry_run_id: int, before_attempt: int
    ) -> ResumePoint | None:
        """Search the experiment's MLflow runs tagged with the registry run for checkpoints."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return None
        runs = self.client.search_runs(
            [found.experiment_id], f"tags.`registry.run_id` = '{int(registry_run_id)}'"
        )
        points = [p for p in map(_resume_point, runs) if p and p.attempt < before_attempt]
        return max(points, key=lambda p: (p.step, p.attempt), default=None)

    def download_artifact(self, run_id: str, artifact_path: str, dst: Path) -> Path:
        """Download `artifact_path` of `run_id` under `dst`."""
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, artifact_path, str(dst)))

    def copy_history(self, run_id: str, up_to_step: int) -> None:
        """Copy every metric of `run_id` up to `up_to_step`, timestamps kept, into the open
        run: a resumed attempt's MLflow run holds the whole history."""
        from mlflow.entities import Metric

        target, copied = self._require_run(), []
        for key in self.client.get_run(run_id).data.metrics:
            for m in self.client.get_metric_history(run_id, key):
                if m.step <= up_to_step:
                    copied.append(Metric(key, m.value, m.timestamp, m.step))
        copied.sort(key=lambda m: (m.step, m.timestamp, m.key))
        for chunk in _chunks(copied, METRICS_PER_CALL):
            self.client.log_batch(target, metrics=chunk)

    def _require_run(self) -> str:
        if self.run_id is None:
            raise RuntimeError("no MLflow run is open: call start() first")
        return self.run_id

    def _require_metrics(self) -> MetricBuffer:
        if self._metrics is None:
            raise RuntimeError("no MLflow run is open: call start() first")
        return self._metrics


def load_checkpoint(tracking_uri: str, mlflow_run_id: str, dst: Path | None = None) -> Path:
    """Download the `checkpoint` artifact of `mlflow_run_id`; returns the local folder."""
    from mlflow.tracking import MlflowClient

    if dst is not None:
        dst.mkdir(parents=True, exist_ok=True)
    local = MlflowClient(tracking_uri).download_artifacts(
        mlflow_run_id, "checkpoint", str(dst) if dst is not None else None
    )
    return Path(local)


def _resume_point(run: Any) -> ResumePoint | None:
    tags = run.data.tags
    try:
        attempt, step = int(tags["registry.attempt"]), int(tags[CHECKPOINT_STEP_TAG])
        return ResumePoint(run.info.run_id, attempt, step, tags[CHECKPOINT_PATH_TAG])
    except (KeyError, ValueError):
        return None


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

    def log_artifact_file(self, local_file: Path, artifact_dir: str) -> None:
        """Dropped."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Dropped."""

    def delete_artifact(self, artifact_path: str) -> None:
        """Nothing stored."""

    def latest_checkpoint(
        self, experiment: str, registry_run_id: int, before_attempt: int
    ) -> ResumePoint | None:
        """A NullTracker stores no checkpoints."""
        return None

    def download_artifact(self, run_id: str, artifact_path: str, dst: Path) -> Path:
        """A NullTracker stores no artifacts."""
        raise FileNotFoundError(f"NullTracker has no artifact {artifact_path} of run {run_id}")

    def copy_history(self, run_id: str, up_to_step: int) -> None:
        """Nothing stored."""
