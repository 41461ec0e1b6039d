"""Fine-tuning (issue 13 item 5): a train run with from_run starts from its parent's weights,
names the parent in its provenance, resumes from its own checkpoint, and reproduces bit for
bit on the CPU; through execute() and a real MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tests.support.worker import make_job, tiny_doc
from worker import finetune
from worker.execute import Result, execute
from worker.tracking import load_checkpoint

STEPS, EVERY = 8, 3
#: Not determined by the weights, the data and the seed: wall time and memory.
MEASURED = {"tokens_per_second", "peak_memory_mb", "eval_peak_memory_mb"}


class Crash(RuntimeError):
    """Stands for a worker that dies mid-run: no warm stop, no checkpoint of its own."""


def _job(trained: dict[str, Any], run_id: int, attempt: int = 1) -> dict[str, Any]:
    doc = tiny_doc(
        training={
            "num_training_steps": STEPS,
            "eval_every_steps": 4,
            "checkpoint_every_steps": EVERY,
            "learning_rate": 1e-3,
        }
    )
    parent = {"id": 1, "mlflow_run_id": trained["result"].mlflow_run_id, "status": "succeeded"}
    job = make_job(doc, run_id=run_id, name="finetune", from_run=parent)
    job["run"]["attempt"] = attempt
    return job


def _run(tracker: Any, job: dict[str, Any], tmp: Path, crash_at: int | None = None) -> Any:
    calls = {"n": 0}

    def should_stop() -> bool:  # asked twice between phases, then once a step
        calls["n"] += 1
        if crash_at is not None and calls["n"] >= 2 + crash_at:
            raise Crash(f"died before step {crash_at}")
        return False

    seen: list[dict[str, Any]] = []
    try:
        return execute(job, tracker, "cpu", should_stop, seen.append, tmp), seen
    except Crash as exc:
        return exc, seen


def _losses(uri: str, mlflow_run_id: str) -> list[tuple[int, float]]:
    history = MlflowClient(uri).get_metric_history(mlflow_run_id, "train_loss")
    return sorted((m.step, m.value) for m in history)


def _model_metrics(result: Result) -> dict[str, float]:
    return {k: v for k, v in result.metrics.items() if k not in MEASURED and "memory" not in k}


@pytest.mark.slow
def test_a_fine_tune_starts_from_its_parents_weights_and_reproduces_bit_for_bit(
    trained: dict[str, Any], tracker_factory: Any, tmp_path: Path
) -> None:
    uri, parent_mlflow = trained["uri"], trained["result"].mlflow_run_id
    fine, seen = _run(tracker_factory(), _job(trained, 601), tmp_path / "fine")
    assert isinstance(fine, Result) and fine.status == "succeeded"
    assert {"phase": "loading", "from_run": 1} in [
        {k: e.get(k) for k in ("phase", "from_run")} for e in seen if e["phase"] == "loading"
    ]

    fresh = _losses(uri, parent_mlflow)
    tuned = _losses(uri, fine.mlflow_run_id)
    fresh_first, parent_last, tuned_first = fresh[0][1], fresh[-1][1], tuned[0][1]
    # The fine-tune's first step already has the parent's loss, far below a fresh model's.
    assert tuned[0][0] == 1 and fresh_first - tuned_first > 1.0
    assert abs(tuned_first - parent_last) < 0.25 * (fresh_first - parent_last)

    parent_folder = load_checkpoint(uri, parent_mlflow, tmp_path / "parent")
    assert fine.provenance["from_run"] == 1
    assert fine.provenance["from_mlflow_run_id"] == parent_mlflow
    assert fine.provenance["from_weights_sha256"] == finetune.weights_sha256(parent_folder)
    own = load_checkpoint(uri, fine.mlflow_run_id, tmp_path / "own")
    assert finetune.weights_sha256(own) != finetune.weights_sha256(parent_folder)
    tags = MlflowClient(uri).get_run(fine.mlflow_run_id).data.tags
    assert tags["registry.from_mlflow_run_id"] == parent_mlflow

    # reproduce: the same version, seed and from_run -> the same run, bit for bit.
    again, _ = _run(tracker_factory(), _job(trained, 602), tmp_path / "again")
    assert _model_metrics(again) == _model_metrics(fine)
    assert _losses(uri, again.mlflow_run_id) == tuned
    copy = load_checkpoint(uri, again.mlflow_run_id, tmp_path / "copy")
    assert finetune.weights_sha256(copy) == finetune.weights_sha256(own)


@pytest.mark.slow
def test_a_crashed_fine_tune_resumes_from_its_own_checkpoint_not_the_parent(
    trained: dict[str, Any], tracker_factory: Any, tmp_path: Path
) -> None:
    whole, _ = _run(tracker_factory(), _job(trained, 611), tmp_path / "whole")
    crashed, _ = _run(tracker_factory(), _job(trained, 612), tmp_path / "a1", crash_at=5)
    assert isinstance(crashed, Crash)  # a checkpoint at step 3, none at the crash
    resumed, seen = _run(tracker_factory(), _job(trained, 612, attempt=2), tmp_path / "a2")
    assert isinstance(resumed, Result)
    assert resumed.provenance["resumed_from"] == {"attempt": 1, "step": EVERY}
    assert resumed.provenance["from_run"] == 1
    assert [e["phase"] for e in seen].count("resumed") == 1
    # Had the parent's weights been copied over the checkpoint's, steps 4..8 would differ.
    assert _model_metrics(resumed) == _model_metrics(whole)
    assert _losses(trained["uri"], resumed.mlflow_run_id) == _losses(
        trained["uri"], whole.mlflow_run_id
    )
