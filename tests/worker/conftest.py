"""Worker fixtures: a tiny config, a real MLflow SQLite store, one trained run to share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.worker import make_job, tiny_doc


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(tracking URI, artifact root) of one SQLite store for the session (3 s to create)."""
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root}/mlflow.db", str(root / "artifacts")


@pytest.fixture
def tracker_factory(mlflow_store: tuple[str, str]) -> Callable[[], Any]:
    """New MlflowTrackers on the session store."""
    from worker.tracking import MlflowTracker

    return lambda: MlflowTracker(mlflow_store[0], artifact_root=mlflow_store[1])


@pytest.fixture(scope="session")
def trained(mlflow_store: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One tiny deepseek_v2 trained for 20 steps through execute(), shared by several tests."""
    from worker.execute import execute
    from worker.tracking import MlflowTracker

    doc = tiny_doc()
    progress: list[dict[str, Any]] = []
    result = execute(
        make_job(doc, name="trained"),
        MlflowTracker(*mlflow_store),
        "cpu",
        lambda: False,
        progress.append,
        tmp_path_factory.mktemp("work"),
    )
    return {"doc": doc, "result": result, "progress": progress, "uri": mlflow_store[0]}
