"""The architecture rules (CONTRACT 5.6): each case fires, and only because of its rule."""

from __future__ import annotations

from typing import Any

import pytest

from registry.document import rules_architecture, ruleset, spec
from registry.document.issues import Issue

LLAMA = {"architecture": "llama", "model_dim": 512, "num_attention_heads": 8}
GROUPED = {"n_routed_experts": 16, "topk_method": "group_limited_greedy"}


def _moe(**moe: Any) -> dict[str, Any]:
    return {"model": {"moe": moe}}


def _mla(**mla: Any) -> dict[str, Any]:
    return {"model": {"mla": mla}}


def _size_cases() -> list[tuple[str, dict[str, Any], str, str]]:
    cases = []
    for path, allow_zero in [
        *((p, False) for p in rules_architecture.SIZE_LIMITS),
        *((p, True) for p in rules_architecture.COUNT_LIMITS),
    ]:
        *parents, leaf = path.split(".")
        raw: dict[str, Any] = {leaf: -1 if allow_zero else 0}
        for parent in reversed(parents):
            raw = {parent: raw}
        if path == "model.num_key_value_heads":
            raw["model"].update(architecture="llama")
        cases.append((f"size_{path.replace('.', '_')}", raw, path, "error"))
    return cases


RULE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    *_size_cases(),
    ("size_model_moe_n_group", _moe(n_group=10**6), "model.moe.n_group", "error"),
    (
        "moe_and_mla_only_on_deepseek",
        {"model": {**LLAMA, "moe": {"n_routed_experts": 8}}},
        "model.moe",
        "error",
    ),
    (
        "moe_and_mla_only_on_deepseek",
        {"model": {**LLAMA, "mla": {"kv_lora_rank": 64}}},
        "model.mla",
        "error",
    ),
    (
        "kv_heads_fit_heads",
        {"model": {**LLAMA, "num_key_value_heads": 3}},
        "model.num_key_value_heads",
        "error",
    ),
    (
        "kv_heads_fit_heads",
        {"model": {**LLAMA, "num_key_value_heads": 16}},
        "model.num_key_value_heads",
        "error",
    ),
    (
        "kv_heads_fit_heads",
        {"model": {"num_key_value_heads": 2}},
        "model.num_key_value_heads",
        "error",
    ),
    (
        "experts_per_token_fit",
        _moe(num_experts_per_tok=5),
        "model.moe.num_experts_per_tok",
        "error",
    ),
    ("experts_per_token_fit", _moe(n_routed_experts=1), "model.moe.num_experts_per_tok", "error"),
    ("group_routing_complete", _moe(**GROUPED, topk_group=2), "model.moe.n_group", "error"),
    ("group_routing_complete", _moe(**GROUPED, n_group=4), "model.moe.topk_group", "error"),
    ("group_sizes_fit", _moe(**GROUPED, n_group=4, topk_group=5), "model.moe.topk_group", "error"),
    ("group_sizes_fit", _moe(**GROUPED, n_group=3, topk_group=2), "model.moe.n_group", "error"),
    (
        "group_sizes_fit",
        _moe(**GROUPED, num_experts_per_tok=6, n_group=8, topk_group=2),
        "model.moe.num_experts_per_tok",
        "error",
    ),
    (
        "dense_layers_fit",
        _moe(first_k_dense_replace=5),
        "model.moe.first_k_dense_replace",
        "error",
    ),
    (
        "dense_layers_fit",
        _moe(first_k_dense_replace=4),
        "model.moe.first_k_dense_replace",
        "warning",
    ),
    ("rotary_dims_even", _mla(qk_rope_head_dim=7), "model.mla.qk_rope_head_dim", "error"),
    ("rotary_dims_even", _mla(qk_nope_head_dim=31), "model.mla.qk_nope_head_dim", "error"),
    (
        "rotary_dims_even",
        {"model": {"architecture": "llama", "model_dim": 40, "num_attention_heads": 8}},
        "model.num_attention_heads",
        "error",
    ),
    (
        "groups_only_for_group_routing",
        _moe(n_routed_experts=8, n_group=4, topk_group=2),
        "model.moe.n_group",
        "warning",
    ),
    (
        "groups_only_for_group_routing",
        _moe(**GROUPED, n_group=4, topk_group=4),
        "model.moe.topk_group",
        "warning",
    ),
    ("latent_ranks_compress", _mla(kv_lora_rank=512), "model.mla.kv_lora_rank", "warning"),
    ("latent_ranks_compress", _mla(q_lora_rank=256), "model.mla.q_lora_rank", "warning"),
    (
        "experts_stay_sparse",
        _moe(n_routed_experts=8, num_experts_per_tok=6),
        "model.moe.num_experts_per_tok",
        "warning",
    ),
    (
        "experts_narrower_than_dense",
        _moe(moe_intermediate_size=1024),
        "model.moe.moe_intermediate_size",
        "warning",
    ),
]


def _issue(raw: dict[str, Any], path: str, severity: str) -> Issue | None:
    result = spec.validate(raw)
    found = result.errors if severity == "error" else result.warnings
    return next((i for i in found if i.field == path), None)


@pytest.mark.parametrize(
    ("name", "raw", "path", "severity"),
    RULE_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(RULE_CASES)],
)
def test_rule_fires_and_only_because_of_its_rule(
    name: str, raw: dict[str, Any], path: str, severity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    issue = _issue(raw, path, severity)
    assert issue is not None, spec.validate(raw).to_dict()
    assert len(issue.message) > 20  # says what and what to do
    monkeypatch.setattr(ruleset, "RULES", [r for r in ruleset.RULES if r.name != name])
    try:
        after = _issue(raw, path, severity)
    except (ArithmeticError, ValueError):  # without its guard a bad size reaches the estimate
        after = None
    assert after is None or after.message != issue.message


def test_every_architecture_rule_has_a_case() -> None:
    names = {r.name for r in (*rules_architecture.CHECKS, *rules_architecture.ADVICE)}
    assert names == {c[0] for c in RULE_CASES}
    assert all(r in ruleset.RULES for r in rules_architecture.CHECKS + rules_architecture.ADVICE)


@pytest.mark.parametrize(
    "model",
    [
        {"moe": {}, "mla": {}},
        {"moe": {"n_shared_experts": 0, "first_k_dense_replace": 0}},
        {**LLAMA, "num_key_value_heads": 2, "tie_word_embeddings": True},
        {**LLAMA, "moe": {}, "mla": {"q_lora_rank": None}},
        {"num_key_value_heads": 8},
        {"moe": {**GROUPED, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2}},
        {"mla": {"q_lora_rank": 128, "kv_lora_rank": 64, "qk_rope_head_dim": 16}},
    ],
)
def test_sound_architectures_have_no_architecture_issue(model: dict[str, Any]) -> None:
    result = spec.validate({"model": model})
    assert result.valid, result.to_dict()["errors"]
    ours = [w for w in result.warnings if w.field.startswith(("model.moe", "model.mla"))]
    assert not ours, ours


def test_messages_say_when_a_value_is_derived() -> None:
    errors = {e.field: e.message for e in spec.validate(_moe(n_routed_experts=1)).errors}
    assert "num_experts_per_tok (2, derived)" in errors["model.moe.num_experts_per_tok"]
    assert "n_routed_experts (1)" in errors["model.moe.num_experts_per_tok"]


def test_a_bad_size_skips_the_cross_checks_that_read_it() -> None:
    result = spec.validate(_moe(n_routed_experts=0, n_group=3, topk_method="group_limited_greedy"))
    fields = [e.field for e in result.errors]
    assert "model.moe.n_routed_experts" in fields
    assert "model.moe.n_group" not in fields and "model.moe.num_experts_per_tok" not in fields
