"""The activation estimate against what autograd saves in the worker's training step.

The measurement (tests/support/activations.py) runs one micro-batch of the model the worker
builds, as the worker runs it, and counts the unique storages saved for backward; with
gradient checkpointing it follows the backward pass and its recomputations to the peak.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from registry.document import spec
from registry.document.activations import activation_bytes, attention_kernel

TOLERANCE = 0.15

TINY = {"model_dim": 32, "num_attention_heads": 2, "num_hidden_layers": 1}, 1, 16
SMALL = {"model_dim": 64, "num_attention_heads": 4, "num_hidden_layers": 2}, 2, 32
WIDE = {"model_dim": 128, "num_attention_heads": 8, "num_hidden_layers": 3}, 4, 64
MOE = {
    "n_routed_experts": 8,
    "num_experts_per_tok": 3,
    "n_shared_experts": 2,
    "moe_intermediate_size": 48,
}
GROUPED = {
    "n_routed_experts": 8,
    "n_group": 4,
    "topk_group": 2,
    "topk_method": "group_limited_greedy",
    "first_k_dense_replace": 0,
    "routed_scaling_factor": 2.0,
}
Q_LORA = {"q_lora_rank": 32, "kv_lora_rank": 48, "qk_nope_head_dim": 16, "v_head_dim": 16}
NO_SHARED = {"n_shared_experts": 0}
BALANCED = {**MOE, "aux_loss_alpha": 0.003}  # DeepSeek-V2's balance loss in the training loss
EQUAL_HEADS = {"qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 16}


def _doc(arch: str, shape: Any, precision: str, **model: Any) -> dict[str, Any]:
    """A normalised document; `model` keys are set on the normalised dict directly."""
    sizes, batch, seq = shape
    raw = {
        "model": {"architecture": arch, **sizes},
        "data": {"seq_len": seq},
        "training": {"per_device_train_batch_size": batch, "precision": precision},
    }
    doc = spec.normalize(raw)
    doc["model"].update(model)
    return doc


def _fast_cases() -> list[tuple[str, dict[str, Any], str]]:
    """Both architectures (DeepSeek-V2: a dense then an MoE layer), both precisions, two shapes,
    grouped-query attention, a mixture of experts set in the document and the balance loss."""
    cases = [
        (f"{arch}-{precision}-{name}", _doc(arch, shape, precision), "sdpa")
        for arch in ("llama", "deepseek_v2")
        for precision in ("fp32", "bf16")
        for name, shape in (("tiny", TINY), ("small", SMALL))
    ]
    cases.append(("llama-gqa-bf16", _doc("llama", SMALL, "bf16", num_key_value_heads=2), "sdpa"))
    cases.append(("deepseek-moe-fp32", _doc("deepseek_v2", SMALL, "fp32", moe=MOE), "sdpa"))
    cases.append(("deepseek-aux-bf16", _doc("deepseek_v2", SMALL, "bf16", moe=BALANCED), "sdpa"))
    return cases


def _slow_cases() -> list[tuple[str, dict[str, Any], str]]:
    """Wider models, the other precision of the custom fields, eager attention, query
    compression, grouped routing, equal latent head sizes, odd heads, tied embeddings, fp16,
    a balance loss of weight 0 (still computed) on grouped routing."""
    odd = {"model_dim": 40, "num_attention_heads": 8, "num_hidden_layers": 2}, 1, 24
    tied = {"model_dim": 48, "num_attention_heads": 6, "num_hidden_layers": 2}, 3, 40
    cases = [
        (f"{arch}-{precision}-wide", _doc(arch, WIDE, precision), "sdpa")
        for arch in ("llama", "deepseek_v2")
        for precision in ("fp32", "bf16")
    ]
    for precision in ("fp32", "bf16"):
        cases += [
            (f"llama-eager-{precision}", _doc("llama", SMALL, precision), "eager"),
            (f"deepseek-eager-{precision}", _doc("deepseek_v2", SMALL, precision), "eager"),
            (
                f"deepseek-q-lora-{precision}",
                _doc("deepseek_v2", SMALL, precision, mla=Q_LORA),
                "sdpa",
            ),
        ]
    cases += [
        ("llama-gqa-fp32", _doc("llama", SMALL, "fp32", num_key_value_heads=2), "sdpa"),
        ("deepseek-moe-bf16-wide", _doc("deepseek_v2", WIDE, "bf16", moe=MOE), "sdpa"),
        ("deepseek-grouped-routing", _doc("deepseek_v2", SMALL, "fp32", moe=GROUPED), "sdpa"),
        ("deepseek-fused-heads", _doc("deepseek_v2", SMALL, "bf16", mla=EQUAL_HEADS), "sdpa"),
        ("deepseek-odd-head-dim", _doc("deepseek_v2", odd, "bf16"), "sdpa"),
        (
            "llama-tied-gqa",
            _doc("llama", tied, "fp32", tie_word_embeddings=True, num_key_value_heads=3),
            "sdpa",
        ),
        ("deepseek-fp16", _doc("deepseek_v2", SMALL, "fp16"), "sdpa"),
        ("deepseek-no-shared-bf16", _doc("deepseek_v2", SMALL, "bf16", moe=NO_SHARED), "sdpa"),
        (
            "deepseek-aux-zero-grouped-fp32",
            _doc("deepseek_v2", WIDE, "fp32", moe={**GROUPED, "aux_loss_alpha": 0.0}),
            "sdpa",
        ),
    ]
    return cases


def _grid() -> list[Any]:
    marked: list[tuple[tuple[str, dict[str, Any], str], Any]] = [
        *((case, ()) for case in _fast_cases()),
        *((case, pytest.mark.slow) for case in _slow_cases()),
    ]
    return [
        pytest.param(doc, attention, ckpt, marks=marks, id=f"{name}-{'ckpt' if ckpt else 'full'}")
        for (name, doc, attention), marks in marked
        for ckpt in (False, True)
    ]


@pytest.mark.parametrize(("doc", "attention", "checkpointing"), _grid())
def test_estimate_is_within_15_percent_of_what_autograd_saves(
    doc: dict[str, Any], attention: str, checkpointing: bool
) -> None:
    pytest.importorskip("transformers")
    from tests.support.activations import measure

    measured = measure(doc, checkpointing, attention).peak
    estimated = activation_bytes(doc, checkpointing, attention)
    assert abs(estimated - measured) / measured <= TOLERANCE, (estimated, measured)


def _random_raw(rng: random.Random) -> dict[str, Any]:
    """A document of random small shape, with random GQA / MoE / MLA fields where they apply."""
    heads = rng.choice([2, 4, 8])
    model: dict[str, Any] = {
        "architecture": rng.choice(["llama", "deepseek_v2"]),
        "model_dim": heads * rng.choice([4, 6, 8, 12, 16]),
        "num_attention_heads": heads,
        "num_hidden_layers": rng.randint(1, 3),
    }
    if model["architecture"] == "llama":
        model["num_key_value_heads"] = rng.choice([h for h in (1, 2, heads) if heads % h == 0])
    else:
        experts = rng.choice([2, 4, 6, 8])
        model["moe"] = {
            "n_routed_experts": experts,
            "num_experts_per_tok": rng.randint(1, experts // 2),
            "n_shared_experts": rng.randint(0, 2),
            "moe_intermediate_size": rng.choice([8, 24, 40]),
            "first_k_dense_replace": rng.randint(0, 1),
        }
        model["mla"] = {
            "q_lora_rank": rng.choice([None, 16, 24]),
            "kv_lora_rank": rng.choice([16, 32, 48]),
            "qk_rope_head_dim": rng.choice([2, 4, 8]),
            "qk_nope_head_dim": rng.choice([4, 8, 12]),
            "v_head_dim": rng.choice([4, 8, 12]),
        }
    training = {
        "per_device_train_batch_size": rng.randint(1, 4),
        "precision": rng.choice(["fp32", "bf16"]),
    }
    return {"model": model, "data": {"seq_len": rng.choice([16, 24, 48])}, "training": training}


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_estimate_holds_for_randomly_drawn_documents(seed: int) -> None:
    pytest.importorskip("transformers")
    from tests.support.activations import measure

    rng = random.Random(seed)
    raw = _random_raw(rng)
    while not spec.validate(raw).valid:
        raw = _random_raw(rng)
    doc = spec.normalize(raw)
    for checkpointing in (False, True):
        measured = measure(doc, checkpointing).peak
        estimated = activation_bytes(doc, checkpointing)
        assert abs(estimated - measured) / measured <= TOLERANCE, (raw, checkpointing)


def test_checkpointing_keeps_less_than_the_full_forward() -> None:
    doc = spec.normalize({"model": {"model_dim": 512, "num_hidden_layers": 8}})
    assert activation_bytes(doc, True) < activation_bytes(doc, False) / 3


def test_eager_keeps_the_probabilities_the_fused_kernel_does_not() -> None:
    raw = {
        "model": {"architecture": "llama", "max_position_embeddings": 2048},
        "data": {"seq_len": 2048},
    }
    doc = spec.normalize(raw)
    assert attention_kernel(doc) == "fused"
    fused, eager = activation_bytes(doc, False), activation_bytes(doc, False, "eager")
    probs = doc["training"]["per_device_train_batch_size"] * 2048 * 2048 * 4
    heads, layers = doc["model"]["num_attention_heads"], doc["model"]["num_hidden_layers"]
    assert eager - fused >= 0.99 * heads * layers * probs
    assert activation_bytes(doc, False, "flash_attention_2") == fused


def test_latent_attention_falls_back_to_the_math_kernel_unless_head_sizes_agree() -> None:
    doc = spec.normalize({"model": {"architecture": "deepseek_v2"}})
    assert attention_kernel(doc) == "math"
    assert attention_kernel(doc, "flash_attention_2") == "fused"
    doc["model"]["mla"] = {"qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 16}
    assert attention_kernel(doc) == "fused"


def test_the_resolved_architecture_fields_change_the_estimate() -> None:
    doc = spec.normalize({"model": {"architecture": "llama"}})
    grouped = spec.normalize({"model": {"architecture": "llama"}})
    grouped["model"]["num_key_value_heads"] = 2
    assert activation_bytes(grouped, False) < activation_bytes(doc, False)
    moe = spec.normalize({"model": {"architecture": "deepseek_v2"}})
    more = spec.normalize({"model": {"architecture": "deepseek_v2"}})
    more["model"]["moe"] = {"num_experts_per_tok": 4}
    assert activation_bytes(more, False) > activation_bytes(moe, False)
    balanced = spec.normalize({"model": {"architecture": "deepseek_v2"}})
    balanced["model"]["moe"] = {"aux_loss_alpha": 0.0}  # weight 0: still computed and saved
    assert activation_bytes(balanced, False) > activation_bytes(moe, False)


def test_an_unknown_attention_implementation_is_refused() -> None:
    with pytest.raises(ValueError, match="attention"):
        activation_bytes(spec.normalize({}), False, "paged")
