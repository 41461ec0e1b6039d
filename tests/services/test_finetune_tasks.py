"""Which runs a classification or matching run may read weights from (fine-tune or evaluate),
on both databases: its own task, or for a fine-tune a causal LM's backbone; a matching model
needs the same visual encoder. Anything else is 422 naming the field, and nothing is queued."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from registry.errors import InvalidInput
from registry.models import Run
from registry.services import queue
from tests.support.builders import store, succeeded
from tests.support.worker import classification_doc, matching_doc, tiny_doc

SAME_MODEL = {"architecture": "llama", "model_dim": 32, "num_attention_heads": 4}
SAME_MODEL |= {"num_hidden_layers": 1, "max_position_embeddings": 128}


def refused(session: Session, doc: dict[str, Any], kind: str, parent: Run) -> list[str]:
    before = session.query(Run).count()
    with pytest.raises(InvalidInput) as caught:
        queue.enqueue(session, store(session, f"child-{kind}", doc), kind, from_run=parent.id)
    assert caught.value.status == 422
    assert session.query(Run).count() == before  # nothing queued
    return [e["field"] for e in caught.value.to_dict()["errors"]]


def test_a_classifier_fine_tunes_from_a_causal_lm_or_a_classifier(session: Session) -> None:
    lm = succeeded(session, store(session, "lm", tiny_doc(model=SAME_MODEL)))
    classifier = succeeded(session, store(session, "classifier", classification_doc()))
    for parent in (lm, classifier):
        run = queue.enqueue(
            session,
            store(session, f"c{parent.id}", classification_doc()),
            "train",
            from_run=parent.id,
        )
        assert run.from_run == parent.id
    # an LM cannot start from a classifier, nor be evaluated as one
    assert refused(session, tiny_doc(model=SAME_MODEL), "train", classifier) == ["task"]
    assert refused(session, classification_doc(), "evaluate", lm) == ["task"]


def test_a_matching_model_needs_the_same_visual_encoder(session: Session) -> None:
    seeing = succeeded(session, store(session, "seeing", matching_doc(0.7)))
    assert refused(session, matching_doc(0.0), "train", seeing) == [
        "multimodal.visual_encoder_weight"
    ]
    assert refused(
        session, matching_doc(0.7, multimodal={"patch_size": 4}), "evaluate", seeing
    ) == ["multimodal.patch_size"]
    other_weights = matching_doc(0.6)
    run = queue.enqueue(session, store(session, "w", other_weights), "evaluate", from_run=seeing.id)
    assert run.from_run == seeing.id
