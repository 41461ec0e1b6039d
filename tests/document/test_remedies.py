"""The guide's out-of-memory remedies as a pure function: each step, its order, exhaustion."""

from __future__ import annotations

from registry.document import spec
from registry.document.remedies import next_remedy, smaller_dims
from tests.support.worker import matching_doc, tiny_doc


def test_the_chain_goes_in_the_guides_order_and_ends() -> None:
    origin = tiny_doc()
    doc, names = origin, []
    while (remedy := next_remedy(doc, origin)) is not None:
        assert spec.validate(remedy.document).valid
        names.append(remedy.name)
        doc = remedy.document
    assert names == ["gradient_checkpointing", "smaller_batch", "smaller_model_dim"]
    assert doc["training"]["gradient_checkpointing"] is True
    assert (
        doc["training"]["per_device_train_batch_size"],
        doc["training"]["gradient_accumulation_steps"],
    ) == (2, 2)
    assert doc["model"]["model_dim"] == 48  # 64 - 2 x 8 heads: head size 6, even
    assert next_remedy(doc, origin) is None


def test_each_step_changes_only_its_fields() -> None:
    doc = tiny_doc(training={"per_device_train_batch_size": 8, "gradient_accumulation_steps": 3})
    first = next_remedy(doc)
    assert first is not None and first.name == "gradient_checkpointing"
    assert spec.diff(doc, first.document) == [
        {"field": "training.gradient_checkpointing", "from": False, "to": True}
    ]
    second = next_remedy(first.document, doc)
    assert second is not None and second.name == "smaller_batch"
    assert {c["field"] for c in spec.diff(first.document, second.document)} == {
        "training.per_device_train_batch_size",
        "training.gradient_accumulation_steps",
    }
    t = second.document["training"]
    assert (t["per_device_train_batch_size"], t["gradient_accumulation_steps"]) == (4, 6)
    assert "effective batch 24 kept" in second.explanation


def test_remedies_already_applied_are_skipped() -> None:
    doc = tiny_doc(training={"gradient_checkpointing": True})
    remedy = next_remedy(doc)
    assert remedy is not None and remedy.name == "smaller_batch"
    # An odd batch cannot be halved with the same effective batch: straight to model_dim.
    odd = tiny_doc(training={"gradient_checkpointing": True, "per_device_train_batch_size": 3})
    remedy = next_remedy(odd)
    assert remedy is not None and remedy.name == "smaller_model_dim"
    # The chain's origin had a bigger batch: halving was applied already.
    halved = tiny_doc(training={"gradient_checkpointing": True, "per_device_train_batch_size": 2})
    origin = tiny_doc(training={"per_device_train_batch_size": 4})
    remedy = next_remedy(halved, origin)
    assert remedy is not None and remedy.name == "smaller_model_dim"


def test_model_dim_goes_to_the_guides_768_then_the_next_size_that_fits() -> None:
    assert smaller_dims(1024, 16)[0] == 768
    assert smaller_dims(768, 12)[:2] == [744, 720]  # multiples of 24: 12 heads, even head size
    assert smaller_dims(800, 24)[0] == 768  # 768 = 16 x 48
    assert smaller_dims(1000, 20)[0] == 960  # 768 is no multiple of 40
    assert smaller_dims(16, 8) == []  # 16 is the smallest: one pair per head


def test_a_size_that_would_not_validate_is_skipped_for_the_next_one() -> None:
    # The ViT's 5 heads must divide its width, which follows model_dim: 632 .. 608 do not
    # validate (each 4-head size below 640 is tried in turn), 600 does.
    doc = matching_doc(
        0.7,
        model={"model_dim": 640, "num_attention_heads": 4},
        multimodal={"visual_num_attention_heads": 5},
        training={"gradient_checkpointing": True, "per_device_train_batch_size": 1},
    )
    assert smaller_dims(640, 4)[:5] == [632, 624, 616, 608, 600]
    assert not spec.validate({**doc, "model": {**doc["model"], "model_dim": 632}}).valid
    remedy = next_remedy(doc)
    assert remedy is not None and remedy.name == "smaller_model_dim"
    assert remedy.document["model"]["model_dim"] == 600


def test_nothing_left_is_none() -> None:
    # model_dim 16 with 8 heads: no smaller size keeps an even head size; batch 1 and
    # checkpointing on: nothing is left.
    doc = tiny_doc(
        model={"model_dim": 16},
        training={"gradient_checkpointing": True, "per_device_train_batch_size": 1},
    )
    assert spec.validate(doc).valid
    assert next_remedy(doc) is None


def test_a_fine_tune_keeps_its_model() -> None:
    # from_run's weights fix the model's sizes: checkpointing and the batch only.
    doc = tiny_doc(training={"gradient_checkpointing": True, "per_device_train_batch_size": 3})
    assert next_remedy(doc, keep_model=True) is None
    remedy = next_remedy(tiny_doc(), keep_model=True)
    assert remedy is not None and remedy.document["model"] == tiny_doc()["model"]
