"""Checkpoints and resume of the classification and matching loops (CONTRACT 5.3): an attempt
that crashed after a checkpoint is resumed by the next one, which ends bit-identical to the
same run trained without a break, on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.worker import classification_doc, make_job, matching_doc
from worker.execute import Result, execute

#: Not determined by the data and the seed: wall time and memory.
MEASURED = {"tokens_per_second", "peak_memory_mb"}
TRAINING = {"num_training_steps": 8, "eval_every_steps": 4, "checkpoint_every_steps": 3}


class Crash(RuntimeError):
    """Stands for a worker that dies: no warm stop, no checkpoint of its own."""


def _dies_before(step: int) -> Callable[[], bool]:
    """should_stop that raises before ``step`` trains (asked twice between phases first)."""
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        if calls["n"] >= 2 + step:
            raise Crash(f"died before step {step}")
        return False

    return should_stop


def _attempt(
    factory: Any, doc: dict[str, Any], run_id: int, attempt: int, tmp: Path, **kw: Any
) -> Any:
    job = make_job(doc, run_id=run_id, name=f"resume-{doc['task']}")
    job["run"]["attempt"] = attempt
    stop = kw.get("stop") or (lambda: False)
    return execute(job, factory(), "cpu", stop, lambda _: None, tmp / f"{run_id}-{attempt}")


@pytest.mark.parametrize(
    "doc",
    [classification_doc(training=TRAINING), matching_doc(0.7, training=TRAINING)],
    ids=["classification", "matching"],
)
def test_a_crashed_attempt_is_resumed_bit_identical(
    tracker_factory, tmp_path: Path, doc: dict[str, Any]
) -> None:
    whole = _attempt(tracker_factory, doc, 701, 1, tmp_path)
    assert isinstance(whole, Result) and whole.provenance["resumed_from"] is None
    with pytest.raises(Crash):
        _attempt(tracker_factory, doc, 702, 1, tmp_path, stop=_dies_before(5))
    asked: list[int] = []
    resumed = _attempt(tracker_factory, doc, 702, 2, tmp_path, stop=lambda: asked.append(1))
    assert resumed.provenance["resumed_from"] == {"attempt": 1, "step": 3}
    assert len(asked) == 2 + 8 - 3  # between phases twice, then steps 4 .. 8 only
    same = {k: v for k, v in whole.metrics.items() if k not in MEASURED}
    assert {k: v for k, v in resumed.metrics.items() if k not in MEASURED} == same
