"""A re-run is "identical" only in the same environment; elsewhere it gets deltas against
the stated tolerance. Pure comparisons of stored provenance, then through the queue."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from registry.models import Run
from registry.services import queue
from registry.services.reproduction import RELATIVE_TOLERANCE, compare
from tests.support.builders import make_version

H200 = {
    "device": "cuda:0 NVIDIA H200",
    "gpu_name": "NVIDIA H200",
    "torch": "2.13.0+cu128",
    "transformers": "5.0.0",
    "cuda": "12.8",
    "compute_capability": "9.0",
    "driver": "570.86.15",
}
A100 = H200 | {"device": "cuda:0 NVIDIA A100-SXM4-80GB", "gpu_name": "NVIDIA A100-SXM4-80GB"}
CPU = {"device": "cpu", "torch": "2.13.0+cpu", "transformers": "5.0.0", "cuda": None}
METRICS = {"val_loss": 2.5, "train_loss": 2.0, "gen_distinct_2": 0.0, "tokens_per_second": 900.0}


def test_the_same_environment_and_bits_is_identical() -> None:
    # The GPU's index and its driver do not change the arithmetic: still the same environment.
    other_index = H200 | {"device": "cuda:3 NVIDIA H200", "driver": "575.0"}
    faster = METRICS | {"tokens_per_second": 1200.0}
    result = compare(METRICS, faster, H200, other_index)
    assert (result["identical"], result["same_environment"], result["within_tolerance"]) == (
        True,
        True,
        True,
    )
    assert result["environment_differences"] == {} and result["deltas"]["tokens_per_second"] == 300


def test_one_bit_off_in_the_same_environment_is_not_identical_but_within_tolerance() -> None:
    result = compare(METRICS, METRICS | {"val_loss": 2.5000001}, H200, H200)
    assert (result["identical"], result["within_tolerance"]) == (False, True)


@pytest.mark.parametrize(
    ("rerun_provenance", "differs"),
    [
        (A100, {"gpu_name"}),
        (CPU, {"device_class", "gpu_name", "torch", "cuda"}),
        (H200 | {"torch": "2.12.0+cu128"}, {"torch"}),
        (H200 | {"transformers": "4.57.1"}, {"transformers"}),
        (H200 | {"cuda": "12.6"}, {"cuda"}),
    ],
)
def test_another_environment_is_never_identical_and_says_why(
    rerun_provenance: dict[str, Any], differs: set[str]
) -> None:
    result = compare(METRICS, METRICS, H200, rerun_provenance)  # equal bits, even so
    assert result["identical"] is False and result["same_environment"] is False
    assert set(result["environment_differences"]) == differs
    assert result["within_tolerance"] is True and result["outside_tolerance"] == []
    gpu = result["environment_differences"].get("gpu_name")
    if rerun_provenance is A100:
        assert gpu == {"original": "NVIDIA H200", "rerun": "NVIDIA A100-SXM4-80GB"}


def test_deltas_against_the_stated_tolerance() -> None:
    inside = METRICS | {"val_loss": 2.5 * (1 + RELATIVE_TOLERANCE * 0.9), "gen_distinct_2": 1e-7}
    outside = METRICS | {"val_loss": 2.5 * (1 + RELATIVE_TOLERANCE * 1.1), "train_loss": 1.0}
    assert compare(METRICS, inside, H200, A100)["within_tolerance"] is True
    result = compare(METRICS, outside, H200, A100)
    assert result["within_tolerance"] is False
    assert result["outside_tolerance"] == ["train_loss", "val_loss"]
    assert result["deltas"]["train_loss"] == -1.0
    assert result["tolerance"] == {"relative": 0.01, "absolute": 1e-06}
    # A timing metric never decides; a model metric the re-run lacks always does.
    slower = compare(METRICS, METRICS | {"tokens_per_second": 1.0}, H200, A100)
    assert slower["within_tolerance"] is True
    missing = compare(METRICS, {k: v for k, v in METRICS.items() if k != "val_loss"}, H200, H200)
    assert (missing["identical"], missing["outside_tolerance"]) == (False, ["val_loss"])


def test_a_finished_rerun_is_judged_with_both_runs_provenance(session: Session) -> None:
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

    def finish(run_id: int, provenance: dict[str, Any], metrics: dict[str, Any]) -> None:
        claimed = queue.claim(session, "w", ["default"], t0, 60)
        assert claimed is not None and claimed.run.id == run_id
        queue.complete(
            session, run_id, claimed.lease, "succeeded", metrics, "m", provenance, None, t0
        )

    original = queue.enqueue(session, make_version(session, "other"), "train")
    finish(original.id, H200, METRICS)
    here, elsewhere = queue.reproduce(session, original.id), queue.reproduce(session, original.id)
    finish(here.id, H200, METRICS)
    finish(elsewhere.id, A100, METRICS | {"val_loss": 2.6})
    session.expire_all()
    same, other = session.get(Run, here.id), session.get(Run, elsewhere.id)
    assert same is not None and other is not None
    assert same.reproduction is not None and other.reproduction is not None
    assert same.identical is True and same.reproduction["same_environment"] is True
    assert other.identical is False
    assert other.reproduction["environment_differences"]["gpu_name"]["rerun"] == A100["gpu_name"]
    assert other.reproduction["outside_tolerance"] == ["val_loss"]
