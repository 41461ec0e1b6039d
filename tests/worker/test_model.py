"""The worker builds exactly what the document describes, and tiny versions of each train.

Grouped-query attention, tied embeddings, DeepSeek-V2's mixture of experts with grouped
routing and shared experts, and its latent attention with query compression: each document
is built by worker.model, checked module by module against its fields, trained three steps
on the CPU through worker.training.train, and its parameter count compared with the estimate.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from registry.document.estimate import estimate
from tests.support.worker import splits_of, tiny_doc
from worker.model import build_model
from worker.tracking import NullTracker
from worker.training import TrainParams, train

STEPS = {"num_training_steps": 3, "eval_every_steps": 3, "per_device_train_batch_size": 2}
MOE = {
    "n_routed_experts": 6,
    "num_experts_per_tok": 2,
    "n_shared_experts": 2,
    "moe_intermediate_size": 24,
    "first_k_dense_replace": 0,
    "topk_method": "group_limited_greedy",
    "n_group": 3,
    "topk_group": 2,
    "routed_scaling_factor": 2.0,
}
MLA = {"q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 6, "qk_rope_head_dim": 4}
DOCUMENTS: dict[str, dict[str, Any]] = {
    "gqa": {"architecture": "llama", "num_key_value_heads": 2},
    "gqa-tied": {"architecture": "llama", "num_key_value_heads": 4, "tie_word_embeddings": True},
    "moe": {"moe": MOE},
    "mla": {"mla": {**MLA, "v_head_dim": 12}},
    "moe-mla-tied": {"moe": MOE, "mla": MLA, "tie_word_embeddings": True},
}


def _doc(name: str) -> dict[str, Any]:
    return tiny_doc(model=DOCUMENTS[name], training=STEPS, data={"seq_len": 32})


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_built_model_has_the_estimated_parameters(name: str) -> None:
    doc = _doc(name)
    model = build_model(doc, 259)
    assert sum(p.numel() for p in model.parameters()) == estimate(doc)["parameters"]


@pytest.mark.parametrize("name", ["gqa-tied", "moe-mla-tied"])  # every field between them
def test_tiny_documents_train_on_the_cpu(name: str) -> None:
    doc = _doc(name)
    torch.manual_seed(0)
    model = build_model(doc, 259)
    result = train(model, splits_of(doc), TrainParams.from_doc(doc), "cpu", NullTracker())
    assert result.steps == 3 and math.isfinite(result.metrics["val_loss"])


def test_grouped_query_attention_has_fewer_key_value_heads() -> None:
    model = build_model(_doc("gqa"))
    attention = model.model.layers[0].self_attn
    head_dim = 64 // 8
    assert attention.q_proj.out_features == 8 * head_dim
    assert attention.k_proj.out_features == attention.v_proj.out_features == 2 * head_dim


@pytest.mark.parametrize("name", ["gqa", "gqa-tied", "moe-mla-tied"])
def test_tied_embeddings_share_one_matrix(name: str) -> None:
    model = build_model(_doc(name))
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    assert tied == bool(DOCUMENTS[name].get("tie_word_embeddings"))


def test_the_mixture_of_experts_is_the_documents() -> None:
    model = build_model(_doc("moe"))
    moe = model.model.layers[0].mlp  # first_k_dense_replace 0: every layer routes
    assert moe.experts.gate_up_proj.shape == (6, 2 * 24, 64)
    assert moe.shared_experts.gate_proj.out_features == 2 * 24
    assert (moe.gate.top_k, moe.gate.num_group, moe.gate.topk_group) == (2, 3, 2)
    assert moe.gate.topk_method == "group_limited_greedy"
    assert moe.gate.routed_scaling_factor == 2.0


def test_latent_attention_compresses_the_query() -> None:
    attention = build_model(_doc("mla")).model.layers[0].self_attn
    assert attention.q_proj is None
    assert (attention.q_a_proj.out_features, attention.q_a_layernorm.weight.numel()) == (24, 24)
    assert attention.q_b_proj.out_features == 8 * (6 + 4)
    assert attention.kv_a_proj_with_mqa.out_features == 16 + 4
    assert attention.kv_b_proj.out_features == 8 * (6 + 12)


def test_deepseek_refuses_key_value_heads_it_cannot_build() -> None:
    doc = tiny_doc()
    doc["model"]["num_key_value_heads"] = 4  # the schema rejects it; the builder says so too
    with pytest.raises(ValueError, match=r"model\.num_key_value_heads"):
        build_model(doc)


@pytest.mark.parametrize("architecture", ["deepseek_v2", "llama"])
def test_gradient_checkpointing_is_asked_for_non_reentrant(architecture: str) -> None:
    model = build_model(
        tiny_doc(model={"architecture": architecture}, training={"gradient_checkpointing": True})
    )
    funcs = [getattr(layer, "_gradient_checkpointing_func", None) for layer in model.model.layers]
    assert funcs and all(f is not None and f.keywords == {"use_reentrant": False} for f in funcs)
