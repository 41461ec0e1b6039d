"""Read a run's metric history and samples back from MLflow, lazily and never fatally.

MLflow is an optional dependency of the service: when it is not installed, or the store or
the run is missing, the pages simply show no curves.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CURVE_KEYS = ("train_loss", "val_loss")
MAX_SAMPLE_CHARS = 20_000
_clients: dict[str, Any] = {}
_lock = threading.Lock()


@dataclass
class History:
    """Metric curves (key -> [(step, value)]) and what else MLflow knows of the run."""

    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    experiment_id: str | None = None
    samples: str | None = None
    problem: str | None = None


def _client(tracking_uri: str) -> Any:
    with _lock:
        if tracking_uri not in _clients:
            from mlflow.tracking import MlflowClient

            _clients[tracking_uri] = MlflowClient(tracking_uri)
        return _clients[tracking_uri]


def read_history(
    tracking_uri: str,
    mlflow_run_id: str | None,
    keys: tuple[str, ...] = CURVE_KEYS,
    samples: bool = False,
) -> History:
    """The curves of ``keys`` (and the samples text when asked) of one MLflow run."""
    if not mlflow_run_id:
        return History(problem="the run has no MLflow run yet")
    try:
        client = _client(tracking_uri)
    except ImportError:
        return History(problem="MLflow is not installed on the server")
    history = History()
    try:
        history.experiment_id = str(client.get_run(mlflow_run_id).info.experiment_id)
        for key in keys:
            points = client.get_metric_history(mlflow_run_id, key)
            if points:
                history.curves[key] = sorted((int(m.step), float(m.value)) for m in points)
        if samples:
            history.samples = _samples(client, mlflow_run_id)
    except Exception as exc:  # a missing run or store must not break the page
        log.warning("could not read MLflow run %s: %s", mlflow_run_id, exc)
        history.problem = f"MLflow could not show run {mlflow_run_id}"
    return history


def _samples(client: Any, mlflow_run_id: str) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(mlflow_run_id, "samples.txt", tmp)
        except Exception:  # no samples stored for this run
            return None
        return Path(local).read_text(encoding="utf-8", errors="replace")[:MAX_SAMPLE_CHARS]


def mlflow_link(ui_url: str | None, history: History, mlflow_run_id: str | None) -> str | None:
    """The run's page in the MLflow UI, when a UI URL is configured."""
    if not ui_url or not mlflow_run_id:
        return None
    base = ui_url.rstrip("/")
    if history.experiment_id:
        return f"{base}/#/experiments/{history.experiment_id}/runs/{mlflow_run_id}"
    return f"{base}/#/runs/{mlflow_run_id}"
