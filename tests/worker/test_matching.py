"""task: multimodal_matching: the scores, a real trained run against chance, and a visual
weight of 0 that builds no visual encoder, reads no image and stays exactly at chance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.support.worker import make_job, matching_doc
from worker.data import DatasetError
from worker.execute import execute
from worker.matching import chance_at_1, contrastive_loss, pair_accuracy, retrieval_at_1

#: What the shrunk preset measured (seeded, deterministic on the CPU): caption-to-image
#: retrieval@1 0.403 against chance 0.027 on builtin:shapes' 72 validation pairs.
MARGIN = 0.2


def test_retrieval_shares_ties_and_chance_counts_duplicate_captions() -> None:
    groups = torch.tensor([0, 0, 1, 2])
    same = groups[:, None] == groups[None, :]
    assert chance_at_1(groups) == pytest.approx((2 / 4 + 2 / 4 + 1 / 4 + 1 / 4) / 4)
    assert retrieval_at_1(torch.eye(4), same) == 1.0
    # every candidate tied: each row gets its group's share, which is chance exactly
    assert retrieval_at_1(torch.zeros(4, 4), same) == pytest.approx(chance_at_1(groups))
    assert pair_accuracy(torch.eye(4), groups, seed=0) == 1.0
    assert pair_accuracy(torch.zeros(4, 4), groups, seed=0) == 0.5


def test_the_loss_treats_a_duplicate_caption_as_right() -> None:
    groups = torch.tensor([0, 0, 1])
    both = torch.tensor([[5.0, 5.0, -5.0], [5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    diagonal_only = torch.tensor([[5.0, -5.0, -5.0], [-5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    assert contrastive_loss(both, groups) < contrastive_loss(diagonal_only, groups)


@pytest.mark.slow
def test_a_visual_weight_of_07_beats_chance_and_0_stays_at_chance(
    tracker_factory, tmp_path: Path
) -> None:
    seen = execute(
        make_job(matching_doc(0.7), name="match"),
        tracker_factory(),
        "cpu",
        lambda: False,
        print,
        tmp_path / "a",
    )
    blind = execute(
        make_job(matching_doc(0.0), name="match-blind"),
        tracker_factory(),
        "cpu",
        lambda: False,
        print,
        tmp_path / "b",
    )
    for m in (seen.metrics, blind.metrics):
        for key in ("val_accuracy", "val_retrieval_at_1", "baseline_retrieval_at_1", "val_loss"):
            assert math.isfinite(m[key]), key
    m, b = seen.metrics, blind.metrics
    assert m["baseline_retrieval_at_1"] == b["baseline_retrieval_at_1"] < 0.05  # the same split
    assert m["val_retrieval_at_1"] > m["baseline_retrieval_at_1"] + MARGIN, m
    assert m["val_accuracy"] > 0.9, m
    assert b["val_retrieval_at_1"] == pytest.approx(b["baseline_retrieval_at_1"], abs=1e-9), b
    assert seen.provenance["visual_encoder"] and not blind.provenance["visual_encoder"]
    client = MlflowClient(tracker_factory().tracking_uri)
    logged = client.get_run(seen.mlflow_run_id).data.metrics
    assert logged["val_retrieval_at_1"] == pytest.approx(m["val_retrieval_at_1"])


def _captions_without_images(root: Path) -> None:
    folder = root / "pairs"
    folder.mkdir(parents=True)
    rows = [{"image": f"missing/{i}.png", "caption": f"caption number {i}"} for i in range(10)]
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_visual_weight_of_0_reads_no_image(tracker_factory, tmp_path: Path) -> None:
    """The images named in captions.jsonl do not exist: only a run that reads none succeeds."""
    _captions_without_images(tmp_path / "data")
    short = {"num_training_steps": 2, "eval_every_steps": 2}
    data = {"dataset": "file:pairs"}
    blind, seeing = (
        make_job(matching_doc(weight, training=short, data=data), name=f"pairs-{weight}")
        for weight in (0.0, 0.7)
    )
    root = tmp_path / "data"
    m = execute(
        blind, tracker_factory(), "cpu", lambda: False, print, tmp_path / "a", data_root=root
    )
    assert math.isfinite(m.metrics["val_retrieval_at_1"])
    with pytest.raises(DatasetError, match=r"^data\.dataset"):
        execute(
            seeing, tracker_factory(), "cpu", lambda: False, print, tmp_path / "b", data_root=root
        )
