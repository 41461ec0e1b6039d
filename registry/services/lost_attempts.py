"""The MLflow run of an attempt whose worker was lost for good, marked KILLED by the reaper.

A worker killed with ``kill -9`` leaves its MLflow run RUNNING. When the run goes on, the worker
that claims the next attempt ends it (``worker/lost.py``); when the reap *finishes* the run
(``failed``, "worker lost", after the last attempt, or ``cancelled`` with its worker gone) no
attempt follows, so :func:`dead_mlflow_runs` names the MLflow run that attempt reported
(``registry.services.progress``) and the reaper marks it KILLED with :func:`kill_mlflow_runs`
after its transaction committed (never an MLflow call inside a transaction). MLflow is an
optional dependency of the service: without it, or with the store unreachable, this logs and
the runs stay as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from registry.models import FINISHED_STATUSES, Run
from registry.services.progress import reported_mlflow_run

log = logging.getLogger(__name__)


def dead_mlflow_runs(reaped: Iterable[Run]) -> list[str]:
    """The MLflow runs of the attempts a reap just finished (no attempt follows them)."""
    found = (reported_mlflow_run(run) for run in reaped if run.status in FINISHED_STATUSES)
    return [mlflow_run_id for mlflow_run_id in found if mlflow_run_id]


def kill_mlflow_runs(tracking_uri: str, mlflow_run_ids: list[str]) -> list[str]:
    """Mark KILLED those of ``mlflow_run_ids`` still RUNNING; the ones marked. Never raises."""
    if not mlflow_run_ids:
        return []
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
    except Exception:  # not installed, or a store that cannot be opened
        log.warning("cannot open MLflow at %s to end lost runs", tracking_uri, exc_info=True)
        return []
    killed = []
    for mlflow_run_id in mlflow_run_ids:
        try:
            if client.get_run(mlflow_run_id).info.status == "RUNNING":
                client.set_terminated(mlflow_run_id, "KILLED")
                killed.append(mlflow_run_id)
                log.info("MLflow run %s of a lost attempt marked KILLED", mlflow_run_id)
        except Exception:  # a missing run or a store down: the next reaper has no second try
            log.warning("could not end MLflow run %s", mlflow_run_id, exc_info=True)
    return killed
