"""Several devices per run (worker.distributed): two gloo ranks on the CPU through execute()."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist
from mlflow.tracking import MlflowClient

from tests.support.worker import make_job, tiny_doc
from worker.distributed import DistributedError
from worker.execute import Stopped, execute

STEPS = 6
#: Measured: 2 ranks against 1 process with twice the batch differ by at most ~1e-7 relative.
TOLERANCE = 1e-5


def _doc(gpus: int, batch: int) -> dict[str, Any]:
    """A tiny llama; two micro-batches a step so that DDP's no_sync is on the path."""
    return tiny_doc(
        model={
            "architecture": "llama",
            "model_dim": 32,
            "num_attention_heads": 4,
            "num_hidden_layers": 1,
        },
        training={
            "num_training_steps": STEPS,
            "per_device_train_batch_size": batch,
            "gradient_accumulation_steps": 2,
            "eval_every_steps": STEPS,
            "precision": "fp32",
        },
        data={"seq_len": 32, "tokenizer": "byte"},
        resources={"gpus": gpus},
    )


def _run(
    doc: dict[str, Any], tracker: Any, workdir: Path, run_id: int, progress: Any = None
) -> Any:
    job = make_job(doc, run_id=run_id, name="ddp")
    return execute(job, tracker, "cpu", lambda: False, progress or (lambda _: None), workdir)


def _curve(client: MlflowClient, mlflow_run_id: str) -> list[float]:
    history = client.get_metric_history(mlflow_run_id, "train_loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def _nothing_left() -> None:
    assert multiprocessing.active_children() == []
    assert not dist.is_initialized()


@pytest.fixture(scope="module")
def one_process(mlflow_store: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The reference: one process with twice the per-device batch, and its train_loss curve."""
    from worker.tracking import MlflowTracker

    tracker = MlflowTracker(*mlflow_store)
    result = _run(_doc(1, 4), tracker, tmp_path_factory.mktemp("one"), run_id=101)
    return result, _curve(MlflowClient(mlflow_store[0]), result.mlflow_run_id)


def _worst(expected: list[float], got: list[float]) -> float:
    assert len(got) == len(expected) == STEPS
    return max(abs(a - b) / abs(a) for a, b in zip(expected, got, strict=True))


def test_two_ranks_train_as_one_process_with_twice_the_batch(
    one_process: Any, tracker_factory: Any, tmp_path: Path
) -> None:
    signalled: list[int] = []

    def sigterm_rank_1(info: dict[str, Any]) -> None:
        """systemd signals the unit's whole group: a child leaves the stop to rank 0."""
        if info.get("phase") == "train" and not signalled:
            (child,) = multiprocessing.active_children()
            os.kill(child.pid, signal.SIGTERM)
            signalled.append(child.pid)

    two = _run(_doc(2, 2), tracker_factory(), tmp_path, run_id=102, progress=sigterm_rank_1)
    assert signalled
    client = MlflowClient(tracker_factory().tracking_uri)
    worst = _worst(one_process[1], _curve(client, two.mlflow_run_id))
    print(f"largest relative train_loss difference: {worst:.3g}")
    assert worst < TOLERANCE
    run = client.get_run(two.mlflow_run_id)
    assert run.data.tags["distributed.world_size"] == "2"
    assert run.data.tags["distributed.backend"] == "gloo"
    assert two.provenance["world_size"] == 2 and two.provenance["backend"] == "gloo"
    found = client.search_runs([run.info.experiment_id], "tags.`registry.run_id` = '102'")
    assert [r.info.run_id for r in found] == [two.mlflow_run_id]  # one MLflow run holds the job
    assert "val_loss" in two.metrics and "tokens_per_second" in two.metrics
    _nothing_left()


@pytest.mark.slow
def test_a_stopped_run_resumes_on_every_rank(
    one_process: Any, tracker_factory: Any, tmp_path: Path
) -> None:
    """Stopped after step 3 (a warm stop: rank 0 checkpoints), the next attempt restores the
    state on both ranks and ends on the uninterrupted curve."""
    asked = {"stop": False}

    def stop_after_3(info: dict[str, Any]) -> None:
        asked["stop"] = asked["stop"] or int(info.get("step") or 0) >= 3

    doc = _doc(2, 2)
    job = make_job(doc, run_id=104, name="ddp")
    with pytest.raises(Stopped):
        execute(job, tracker_factory(), "cpu", lambda: asked["stop"], stop_after_3, tmp_path / "1")
    _nothing_left()
    job["run"]["attempt"] = 2
    second = execute(job, tracker_factory(), "cpu", lambda: False, lambda _: None, tmp_path / "2")
    assert second.provenance["resumed_from"]["step"] == 3
    client = MlflowClient(tracker_factory().tracking_uri)
    assert _worst(one_process[1], _curve(client, second.mlflow_run_id)) < TOLERANCE
    _nothing_left()


def test_a_rank_that_dies_fails_the_run_naming_it(tracker_factory: Any, tmp_path: Path) -> None:
    killed: list[int] = []

    def kill_rank_1(info: dict[str, Any]) -> None:
        if info.get("phase") == "train" and not killed:
            (child,) = multiprocessing.active_children()
            os.kill(child.pid, signal.SIGKILL)
            killed.append(child.pid)

    started = time.monotonic()
    with pytest.raises(DistributedError, match=r"rank 1 of 2 \(pid \d+\) died .*SIGKILL"):
        _run(_doc(2, 2), tracker_factory(), tmp_path, run_id=103, progress=kill_rank_1)
    assert killed and time.monotonic() - started < 60
    _nothing_left()


def test_what_ddp_cannot_honour_is_refused_naming_the_field() -> None:
    from tests.support.worker import classification_doc
    from worker.distributed import refuse_unsupported

    refuse_unsupported(_doc(1, 4) | {"training": {"compile": True}})  # one device: all fine
    refuse_unsupported(classification_doc(resources={"gpus": 2}))  # every task trains on N
    with pytest.raises(NotImplementedError, match=r"^training\.compile"):
        refuse_unsupported(tiny_doc(training={"compile": True}, resources={"gpus": 2}))
