"""What a heartbeat reports about its attempt: progress, and the MLflow run it logs to.

The run's ``mlflow_run_id`` names the MLflow run of the attempt that reported one last, so a
run page shows the curves of a run while it trains. ``progress`` belongs to the attempt (a
requeue clears it); the service keeps in ``progress.mlflow_run_id`` the MLflow run this
attempt reported (a worker's own ``progress.mlflow_run_id`` is dropped: the key is the
service's), so that a second, different one is told apart from an earlier attempt's.
"""

from __future__ import annotations

from typing import Any

from registry.errors import MlflowRunMismatch
from registry.models import Run

#: The ``progress`` key that holds the MLflow run this attempt reported.
KEY = "mlflow_run_id"


def note(run: Run, progress: dict[str, Any] | None, mlflow_run_id: str | None) -> None:
    """Store a heartbeat's ``progress`` (when sent) and ``mlflow_run_id`` (when sent) on ``run``.

    The attempt's first MLflow run id is stored, replacing an earlier attempt's (that one
    stays in MLflow under its ``registry.attempt`` tag); the same id again changes nothing;
    another id later in the same attempt raises ``MlflowRunMismatch`` (409) before anything
    changed: an attempt logs to one MLflow run, and the service never swaps it silently.
    """
    reported = reported_mlflow_run(run)
    if mlflow_run_id is not None and mlflow_run_id != reported:
        if reported is not None:
            raise MlflowRunMismatch(
                f"run {run.id}: this attempt already reported MLflow run {reported}",
                run=run.id,
                mlflow_run_id=reported,
            )
        run.mlflow_run_id = reported = mlflow_run_id
    if progress is not None:
        run.progress = {k: v for k, v in progress.items() if k != KEY}
    if reported is not None:
        run.progress = {**(run.progress or {}), KEY: reported}


def reported_mlflow_run(run: Run) -> str | None:
    """The MLflow run this attempt reported (None before its first report)."""
    said = (run.progress or {}).get(KEY)
    return run.mlflow_run_id if said is not None and said == run.mlflow_run_id else None
