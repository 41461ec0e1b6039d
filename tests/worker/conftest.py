"""Worker fixtures: a tiny config, a real MLflow SQLite store, one trained run to share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from registry.document.spec import config_hash, normalize

TINY: dict[str, Any] = {
    "model": {
        "architecture": "deepseek_v2",
        "model_dim": 64,
        "num_attention_heads": 8,
        "num_hidden_layers": 2,
        "max_position_embeddings": 128,
    },
    "training": {
        "num_training_steps": 20,
        "per_device_train_batch_size": 4,
        "eval_every_steps": 10,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.1,
    },
    "generation": {"max_length": 64, "per_device_eval_batch_size": 4},
    "data": {"dataset": "builtin:pydoc", "seq_len": 64},
}


def tiny_doc(**sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny normalised document, with `sections` merged over it."""
    raw = {name: dict(fields) for name, fields in TINY.items()}
    for name, fields in sections.items():
        raw.setdefault(name, {}).update(fields)
    return normalize(raw)


def make_job(
    doc: dict[str, Any],
    kind: str = "train",
    run_id: int = 1,
    name: str = "tiny",
    from_run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A claim as the daemon receives it."""
    run = {
        "id": run_id,
        "config": name,
        "version": 1,
        "config_hash": config_hash(doc),
        "kind": kind,
        "attempt": 1,
        "status": "running",
    }
    return {"run": run, "config": doc, "lease": 1, "from_run": from_run}


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
