"""Issue 13, item 5: which train runs may start from a run (fine-tuning), on both databases."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from registry.errors import BadRequest, DuplicateRun, InvalidInput
from registry.models import Run
from registry.services import queue
from registry.services.finetune import differences, weight_shapes
from tests.support.builders import store, succeeded
from tests.support.worker import tiny_doc

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def parent(session: Session) -> Run:
    return succeeded(session, store(session, "parent", tiny_doc()))


def test_the_parent_must_be_a_succeeded_train_run(session: Session, parent: Run) -> None:
    child = store(session, "child", tiny_doc(data={"dataset": "builtin:licenses"}))
    for missing in (parent.id + 100,):
        with pytest.raises(BadRequest, match="does not exist") as refused:
            queue.enqueue(session, child, "train", from_run=missing)
        assert refused.value.extra["field"] == "from_run"
    evaluation = succeeded(session, parent.version, "evaluate", from_run=parent.id)
    waiting = queue.enqueue(session, child, "train")
    for run in (waiting, evaluation):
        with pytest.raises(BadRequest, match="succeeded train run") as refused:
            queue.enqueue(session, child, "train", from_run=run.id)
        assert refused.value.status == 400 and refused.value.extra["field"] == "from_run"
    fine_tune = queue.enqueue(session, child, "train", from_run=parent.id)
    assert (fine_tune.kind, fine_tune.from_run) == ("train", parent.id)


LLAMA = {"architecture": "llama"}


@pytest.mark.parametrize(
    ("base", "model", "named"),
    [
        ({}, {"model_dim": 128}, "hidden_size"),
        ({}, {"num_hidden_layers": 3}, "num_hidden_layers"),
        (LLAMA, LLAMA | {"num_key_value_heads": 4}, "num_key_value_heads"),
        ({}, {"intermediate_size": 64}, "intermediate_size"),
        ({}, {"vocab_size": 512}, "vocab_size"),
        ({}, {"tie_word_embeddings": True}, "tie_word_embeddings"),
        ({}, LLAMA, "architecture"),
        ({}, {"moe": {"n_routed_experts": 8}}, "n_routed_experts"),
        ({}, {"mla": {"kv_lora_rank": 16}}, "kv_lora_rank"),
    ],
)
def test_a_model_that_builds_other_weights_is_refused_naming_model(
    session: Session, base: dict[str, Any], model: dict[str, Any], named: str
) -> None:
    parent = succeeded(session, store(session, "parent", tiny_doc(model=base)))
    child = store(session, "child", tiny_doc(model=model))
    with pytest.raises(InvalidInput) as refused:
        queue.enqueue(session, child, "train", from_run=parent.id)
    body = refused.value.to_dict()
    assert refused.value.status == 422 and {e["field"] for e in body["errors"]} == {"model"}
    assert named in body["error"] and f"from_run {parent.id}" in body["error"]
    assert session.query(Run).filter(Run.from_run == parent.id).count() == 0


def test_another_tokenizer_is_refused_naming_data_tokenizer(session: Session, parent: Run) -> None:
    child = store(session, "child", tiny_doc(data={"tokenizer": "bpe"}, model={"vocab_size": 259}))
    with pytest.raises(InvalidInput) as refused:
        queue.enqueue(session, child, "train", from_run=parent.id)
    assert [e["field"] for e in refused.value.to_dict()["errors"]] == ["data.tokenizer"]


def test_what_has_no_weights_may_differ(session: Session, parent: Run) -> None:
    changed = tiny_doc(
        model={"max_position_embeddings": 256, "moe": {"num_experts_per_tok": 1}},
        training={"learning_rate": 1e-4, "num_training_steps": 5, "seed": 3},
        data={"dataset": "builtin:licenses", "seq_len": 32},
    )
    assert weight_shapes(changed) == weight_shapes(tiny_doc())
    assert differences(tiny_doc(), changed) == []
    run = queue.enqueue(session, store(session, "child", changed), "train", from_run=parent.id)
    assert run.from_run == parent.id and run.seed == 3


def test_weight_shapes_are_resolved_not_as_written() -> None:
    explicit = tiny_doc(model={"num_key_value_heads": 8, "vocab_size": 259})
    assert weight_shapes(explicit) == weight_shapes(tiny_doc())
    assert weight_shapes(tiny_doc())["qk_rope_head_dim"] == 4  # derived from head_dim 8


def test_reproduce_of_a_fine_tune_keeps_its_parent_and_duplicates_count_the_parent(
    session: Session, parent: Run
) -> None:
    code: dict[str, Any] = {"force": False, "code_version": "1.0+gabc"}
    # The parent's own config, fine-tuned: other work than the parent's run, so not refused.
    fine_tune = succeeded(session, parent.version, from_run=parent.id, **code)
    with pytest.raises(DuplicateRun) as refused:
        queue.enqueue(session, parent.version, "train", from_run=parent.id, **code)
    assert refused.value.extra["run"] == fine_tune.id
    with pytest.raises(DuplicateRun) as refused:
        queue.enqueue(session, parent.version, "train", **code)
    assert refused.value.extra["run"] == parent.id
    copy = queue.reproduce(session, fine_tune.id)
    assert (copy.kind, copy.from_run, copy.reproduces, copy.seed) == (
        "train",
        parent.id,
        fine_tune.id,
        fine_tune.seed,
    )
