"""For every document the schema accepts, the estimate counts the model transformers builds.

Hypothesis draws documents over every field that changes the model's shape (both
architectures, grouped-query attention, tied embeddings, each model.moe and model.mla field
given or left null); the ones the schema rejects are discarded, and each accepted one is built
on the meta device (no memory) and its ``sum(p.numel())`` compared with the estimate.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from registry.document import architecture, spec
from registry.document.estimate import estimate
from tests.support.architectures import meta_parameter_count

pytest.importorskip("transformers")


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


@st.composite
def _moe(draw: st.DrawFn, layers: int) -> dict[str, Any]:
    routed = draw(_maybe(st.integers(1, 8)))
    resolved = routed or architecture.N_ROUTED_EXPERTS
    method = draw(_maybe(st.sampled_from(["greedy", "group_limited_greedy"])))
    groups = draw(_maybe(st.sampled_from([g for g in range(1, 9) if resolved % g == 0])))
    return {
        "n_routed_experts": routed,
        "num_experts_per_tok": draw(_maybe(st.integers(1, resolved))),
        "n_shared_experts": draw(_maybe(st.integers(0, 3))),
        "moe_intermediate_size": draw(_maybe(st.integers(1, 48))),
        "first_k_dense_replace": draw(_maybe(st.integers(0, layers + 1))),
        "topk_method": method,
        "n_group": groups,
        "topk_group": draw(_maybe(st.integers(1, groups or 1))) if groups else None,
        "routed_scaling_factor": draw(_maybe(st.floats(0.5, 16.0))),
    }


@st.composite
def _mla(draw: st.DrawFn) -> dict[str, Any]:
    even = st.integers(1, 8).map(lambda n: 2 * n)
    return {
        "q_lora_rank": draw(_maybe(st.integers(1, 48))),
        "kv_lora_rank": draw(_maybe(st.integers(1, 48))),
        "qk_nope_head_dim": draw(_maybe(even)),
        "qk_rope_head_dim": draw(_maybe(even)),
        "v_head_dim": draw(_maybe(st.integers(1, 16))),
    }


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(["deepseek_v2", "llama"]))
    heads, head_dim = draw(st.integers(1, 8)), draw(st.integers(1, 12))
    layers = draw(st.integers(1, 4))
    model: dict[str, Any] = {
        "architecture": name,
        "model_dim": heads * head_dim,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "intermediate_size": draw(_maybe(st.integers(1, 96))),
        "vocab_size": draw(_maybe(st.integers(259, 600))),
        "tie_word_embeddings": draw(st.booleans()),
    }
    if model["architecture"] == "llama":
        divisors = [k for k in range(1, heads + 1) if heads % k == 0]
        model["num_key_value_heads"] = draw(_maybe(st.sampled_from(divisors)))
    else:
        model["num_key_value_heads"] = draw(_maybe(st.just(heads)))
        model["moe"] = draw(_maybe(_moe(layers)))
        model["mla"] = draw(_maybe(_mla()))
    tokenizer = draw(st.sampled_from(["byte", "bpe"]))
    return {"model": model, "data": {"tokenizer": tokenizer, "seq_len": 16}}


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(documents())
def test_every_accepted_document_is_counted_exactly(raw: dict[str, Any]) -> None:
    checked = spec.validate(raw)
    assume(checked.valid)
    doc = checked.normalized
    assert doc is not None
    e = estimate(doc)
    assert e["parameters"] == meta_parameter_count(doc)
    assert 0 < e["compute_parameters"] <= e["active_parameters"] <= e["parameters"]
