"""Fine-tunes and evaluate runs of the classification and matching tasks, through execute()
with a real MLflow store: an evaluate run of a trained model scores what its train run scored,
a fine-tune starts from its parent's weights (a classifier's or a causal LM's backbone), and
other labels fail naming data.dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.worker import classification_doc, make_job, matching_doc, tiny_doc
from worker.data import DatasetError
from worker.execute import Result, execute
from worker.task_weights import backbone_state

pytestmark = pytest.mark.slow

SAME_MODEL = {"architecture": "llama", "model_dim": 32, "num_attention_heads": 4}
SAME_MODEL |= {"num_hidden_layers": 1, "max_position_embeddings": 128}
SHORT = {"num_training_steps": 20, "eval_every_steps": 20}


def _run(factory: Any, doc: dict[str, Any], work: Path, kind: str = "train", **kw: Any) -> Result:
    parent: Result | None = kw.pop("parent", None)
    from_run = None if parent is None else {"id": 1, "mlflow_run_id": parent.mlflow_run_id}
    job = make_job(doc, kind=kind, name=work.name, from_run=from_run)
    return execute(job, factory(), "cpu", lambda: False, lambda _: None, work, **kw)


def test_a_classifier_evaluates_as_it_scored_and_fine_tunes_from_itself_or_an_lm(
    tracker_factory, tmp_path: Path
) -> None:
    trained = _run(tracker_factory, classification_doc(training=SHORT), tmp_path / "c")
    scored = _run(tracker_factory, classification_doc(), tmp_path / "e", "evaluate", parent=trained)
    for key in ("val_accuracy", "val_macro_f1", "val_loss", "baseline_accuracy"):
        assert scored.metrics[key] == pytest.approx(trained.metrics[key], abs=1e-6), key
    again = _run(
        tracker_factory, classification_doc(training=SHORT), tmp_path / "f", parent=trained
    )
    assert again.provenance["from_task"] == "classification"
    assert again.provenance["from_run"] == 1
    lm = _run(
        tracker_factory,
        tiny_doc(model=SAME_MODEL, training={"num_training_steps": 4}),
        tmp_path / "lm",
    )
    tuned = _run(tracker_factory, classification_doc(training=SHORT), tmp_path / "t", parent=lm)
    assert tuned.provenance["from_task"] == "causal_lm"
    assert tuned.metrics["val_accuracy"] > 0


def test_other_labels_fail_naming_the_dataset(tracker_factory, tmp_path: Path) -> None:
    trained = _run(
        tracker_factory, classification_doc(training={"num_training_steps": 2}), tmp_path / "c"
    )
    root = tmp_path / "data"
    root.mkdir()
    rows = [{"text": f"some text {i}", "label": "ab"[i % 2]} for i in range(20)]
    (root / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = classification_doc(data={"dataset": "file:two.jsonl"}, training={"num_training_steps": 2})
    with pytest.raises(DatasetError, match=r"^data\.dataset: file:two\.jsonl has labels"):
        _run(tracker_factory, doc, tmp_path / "e", "evaluate", parent=trained, data_root=root)


def test_a_matching_model_evaluates_as_it_scored_and_fine_tunes_from_an_lm(
    tracker_factory, tmp_path: Path
) -> None:
    short = {"num_training_steps": 40, "eval_every_steps": 40}
    trained = _run(tracker_factory, matching_doc(0.7, training=short), tmp_path / "m")
    scored = _run(tracker_factory, matching_doc(0.7), tmp_path / "e", "evaluate", parent=trained)
    for key in ("val_retrieval_at_1", "val_accuracy", "baseline_retrieval_at_1"):
        assert scored.metrics[key] == pytest.approx(trained.metrics[key], abs=1e-6), key
    lm_doc = tiny_doc(
        model=SAME_MODEL | {"max_position_embeddings": 64}, training={"num_training_steps": 4}
    )
    lm = _run(tracker_factory, lm_doc, tmp_path / "lm")
    tuned = _run(
        tracker_factory,
        matching_doc(0.7, training={"num_training_steps": 2}),
        tmp_path / "t",
        parent=lm,
    )
    assert tuned.provenance["from_task"] == "causal_lm"


def test_an_lm_backbone_is_what_the_classifier_starts_from(tracker_factory, tmp_path: Path) -> None:
    from worker.finetune import download
    from worker.model import build_classifier
    from worker.task_weights import load_classifier_weights

    lm = _run(
        tracker_factory,
        tiny_doc(model=SAME_MODEL, training={"num_training_steps": 3}),
        tmp_path / "lm",
    )
    parent = download(tracker_factory(), {"id": 1, "mlflow_run_id": lm.mlflow_run_id}, tmp_path)
    model = build_classifier(classification_doc(), 259, 6)
    assert load_classifier_weights(model, parent.folder, [], "builtin:stdlib-docs") == "causal_lm"
    for name, value in backbone_state(parent.folder).items():
        assert torch.equal(model.model.state_dict()[name], value), name
