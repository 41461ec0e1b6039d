"""The model section's architecture fields (CONTRACT 5.6): typing, nested errors, hash stability."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry.document import fields, spec
from registry.document.presets import list_presets
from registry.query.parse import parse
from tests.support.presetdata import hash_before_dataset

#: Hashes computed from main before model.num_key_value_heads/tie_word_embeddings/moe/mla
#: existed (commit f91175a); every one must stay as it was (CONTRACT 5.4).
HASHES_BEFORE_ARCHITECTURE_FIELDS = {
    "tiny-cpu": "3435a9370b0eebb4d9f52f3f9e4d360a01996d630021131fd4eadddc1764daa7",
    "lightweight-classification": (
        "bc0e37078b025347a2a2240f63fad45b957311110f2bf98a70f5a64a6f27f249"
    ),
    "complex-multimodal": "a7f7d7706aa7f9b77f6700e130a54a3b1395d674c34c6121e77c6c7b6a419e5b",
    "structured-output": "c78b741d8e1c961afff4425e778b975937aa51cf86646555a020ab59bca08de3",
    "creative-writing": "732a3899560e660b396b90134bca7d9f4a36f7928f7ca4cbccb3808607c36978",
    "deterministic-qa": "a3aa648c3c3d08164d0b20fa9002f49e4b393ac236dbc06b8af4ceb24ee79c17",
    "open-generation": "36279dad7543ba1a815cd41458353ce4898d697d3be4a5a23f05bf6cc42ccbd0",
    "image-text-matching": "395e5d7209d3982548d17997aefadbd93ba1e1e025b1f1f12a9184900bc08c13",
    "efficient-inference": "f2254444a6698b54adcc930a9bf9c1ab7603c76c1883f92d0c9c47ce2ebefbf2",
    "high-quality-generation": "e5ba29cb39633fbe4aacd554f8cd6bac931e06092fca4d2eef29fdf1160a75bb",
}
#: Presets changed since (issue 12: the GPU presets train in bf16), with what they held then.
PRESETS_CHANGED_SINCE = {
    "lightweight-classification": {"precision": "fp32"},
    "efficient-inference": {"precision": "fp32"},
}
EMPTY_HASH = "4a172f1b5071f2bc1ee84c63c35d3d5f234c7215f7b125f558c7b7b3542c3e12"
LLAMA_512 = {"model": {"architecture": "llama", "model_dim": 512, "num_attention_heads": 8}}
LLAMA_512_HASH = "92fd2e53cbe2e8d6710b6adbe8a30166f0c39a9ce9887de8dfca40e918fd826b"
#: A version as the service stored it before the change: the normalised JSON, word for word.
STORED_BEFORE = json.loads(
    '{"schema_version": 1, "task": "causal_lm", "model": {"architecture": "llama", '
    '"model_dim": 512, "num_attention_heads": 8, "num_hidden_layers": 4, "intermediate_size": '
    'null, "max_position_embeddings": 512, "vocab_size": null}, "training": {"learning_rate": '
    '3e-05, "scheduler": "linear", "warmup_ratio": 0.1, "num_warmup_steps": null, '
    '"num_training_steps": 1000, "per_device_train_batch_size": 16, '
    '"gradient_accumulation_steps": 1, "gradient_checkpointing": false, "weight_decay": 0.0, '
    '"max_grad_norm": 1.0, "precision": "fp32", "seed": 42, "eval_every_steps": 100}, '
    '"generation": {"temperature": 0.7, "top_p": 0.92, "repetition_penalty": 1.0, '
    '"max_length": 512, "per_device_eval_batch_size": 32}, "multimodal": '
    '{"visual_encoder_weight": 0.0, "text_encoder_weight": 1.0}, "data": {"dataset": '
    '"builtin:pydoc", "tokenizer": "byte", "seq_len": 128, "validation_fraction": 0.1}, '
    '"resources": {"gpus": 1, "gpu_memory_gb": 16.0}}'
)


def _hash(raw: dict[str, Any]) -> str:
    result = spec.validate(raw)
    assert result.valid, result.to_dict()["errors"]
    assert result.hash is not None
    return result.hash


def test_every_earlier_preset_keeps_its_hash() -> None:
    now = {
        p.name: hash_before_dataset(p.name, _as_before(p.name, p.document)) for p in list_presets()
    }
    assert {k: now[k] for k in HASHES_BEFORE_ARCHITECTURE_FIELDS} == (
        HASHES_BEFORE_ARCHITECTURE_FIELDS
    )


def _as_before(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The preset as it was when the hashes were taken (the fields changed since put back)."""
    changed = PRESETS_CHANGED_SINCE.get(name)
    return {**doc, "training": {**doc["training"], **changed}} if changed else doc


def test_changed_presets_hash_differently_now() -> None:
    for name in PRESETS_CHANGED_SINCE:
        preset = next(p for p in list_presets() if p.name == name)
        assert preset.document["training"]["precision"] == "bf16"
        assert _hash(preset.document) != HASHES_BEFORE_ARCHITECTURE_FIELDS[name]


def test_documents_without_the_fields_keep_their_hash() -> None:
    assert _hash({}) == EMPTY_HASH
    assert _hash(LLAMA_512) == LLAMA_512_HASH


def test_a_version_stored_before_keeps_its_hash_and_normalises_to_itself() -> None:
    assert spec.config_hash(STORED_BEFORE) == LLAMA_512_HASH
    assert _hash(STORED_BEFORE) == LLAMA_512_HASH
    assert spec.normalize(STORED_BEFORE) == STORED_BEFORE


@pytest.mark.parametrize(
    "model",
    [
        {"moe": {}},
        {"mla": {}},
        {"moe": None, "mla": None},
        {"num_key_value_heads": None, "tie_word_embeddings": False},
        {"moe": {"n_routed_experts": None, "topk_method": None, "routed_scaling_factor": None}},
        {"mla": {"q_lora_rank": None, "kv_lora_rank": None, "v_head_dim": None}},
    ],
)
def test_unset_fields_hash_like_absent_ones(model: dict[str, Any]) -> None:
    raw = {"model": {**LLAMA_512["model"], **model}}
    assert _hash(raw) == LLAMA_512_HASH
    assert spec.normalize(raw) == STORED_BEFORE


def test_set_fields_are_kept_without_their_nulls_and_change_the_hash() -> None:
    raw = {
        "model": {
            "num_key_value_heads": 8,
            "tie_word_embeddings": True,
            "moe": {"n_routed_experts": 8, "n_group": None},
            "mla": {"kv_lora_rank": 64},
        }
    }
    doc = spec.normalize(raw)
    assert doc["model"]["moe"] == {"n_routed_experts": 8}
    assert doc["model"]["mla"] == {"kv_lora_rank": 64}
    assert doc["model"]["tie_word_embeddings"] is True
    assert spec.normalize(doc) == doc  # idempotent
    assert spec.config_hash(doc) != EMPTY_HASH
    explicit = {"model": {**raw["model"], "moe": {"n_routed_experts": 8.0, "topk_group": None}}}
    assert spec.config_hash(spec.normalize(explicit)) == spec.config_hash(doc)


@pytest.mark.parametrize(
    ("model", "path", "words"),
    [
        ({"moe": {"topk_group": "3"}}, "model.moe.topk_group", "whole number"),
        ({"moe": {"topk_grup": 3}}, "model.moe.topk_grup", "did you mean 'topk_group'"),
        ({"mla": {"rank": 3}}, "model.mla.rank", "not a field of 'model.mla'"),
        ({"moe": [1, 2]}, "model.moe", "n_routed_experts"),
        ({"mla": 5}, "model.mla", "kv_lora_rank"),
        ({"moe": {"topk_method": "fancy"}}, "model.moe.topk_method", "group_limited_greedy"),
        ({"moe": {"routed_scaling_factor": "16"}}, "model.moe.routed_scaling_factor", "number"),
        ({"tie_word_embeddings": "yes"}, "model.tie_word_embeddings", "true or false"),
        ({"num_key_value_heads": 2.5}, "model.num_key_value_heads", "whole number"),
        ({"num_key_value_head": 2}, "model.num_key_value_head", "num_key_value_heads"),
    ],
)
def test_nested_type_errors_name_the_full_path(
    model: dict[str, Any], path: str, words: str
) -> None:
    result = spec.validate({"model": model})
    found = {e.field: e.message for e in result.errors}
    assert path in found, result.to_dict()
    assert words in found[path]


def test_a_nested_error_does_not_hide_the_other_nested_fields() -> None:
    result = spec.validate({"model": {"moe": {"topk_group": "x", "n_routed_experts": 0}}})
    assert {e.field for e in result.errors} >= {
        "model.moe.topk_group",
        "model.moe.n_routed_experts",
    }


def test_flatten_diff_and_filter_keys_reach_nested_fields() -> None:
    a = spec.normalize({})
    b = spec.normalize({"model": {"moe": {"n_routed_experts": 8}, "tie_word_embeddings": True}})
    assert spec.flatten(b)["model.moe.n_routed_experts"] == 8
    rows = {r["field"]: (r["from"], r["to"]) for r in spec.diff(a, b)}
    assert rows == {
        "model.moe.n_routed_experts": (None, 8),
        "model.tie_word_embeddings": (None, True),
    }
    assert parse("params.model.moe.n_routed_experts >= 64")
    assert parse("params.model.mla.q_lora_rank = 1536")
    assert {"model.moe.topk_group", "model.mla.v_head_dim"} <= fields.param_paths()


def test_schema_and_field_help_describe_nested_fields() -> None:
    schema = fields.json_schema()
    moe = schema["$defs"]["MoeSettings"]
    assert moe["additionalProperties"] is False
    assert moe["properties"]["topk_method"]["anyOf"][0]["enum"] == [
        "greedy",
        "group_limited_greedy",
    ]
    assert "December 2026" in moe["properties"]["n_group"]["x-added"]
    help_ = fields.field_help()
    assert "model.moe" not in help_ and "model.mla" not in help_
    assert help_["model.mla.kv_lora_rank"]["recommended"].startswith("512")
    assert set(spec.LATER_FIELDS) <= set(help_)
