"""Parameter count and peak training memory of a normalised document (arithmetic only).

The parameter count is exact for the model :mod:`registry.document.architecture` builds; the memory
figure is an estimate (see docs/config-document.md for the formula and its assumptions).
"""

from __future__ import annotations

import math
from typing import Any

from registry.document import architecture as arch
from registry.document.activations import activation_bytes

GIB = 1024**3
FP32 = 4


def _dense_mlp(d: int, inner: int) -> int:
    return 3 * d * inner  # gate_proj, up_proj, down_proj; no biases


def _attention(doc: dict[str, Any]) -> int:
    d, heads = doc["model"]["model_dim"], doc["model"]["num_attention_heads"]
    if arch.model_type(doc) == "llama":
        return 4 * d * d  # q, k, v, o (num_key_value_heads == heads, no biases)
    m = arch.mla_dims(doc)
    qk, rank = m["qk_nope_head_dim"] + m["qk_rope_head_dim"], m["kv_lora_rank"]
    return (
        d * heads * qk  # q_proj (q_lora_rank None)
        + d * (rank + m["qk_rope_head_dim"])  # kv_a_proj_with_mqa
        + rank  # kv_a_layernorm
        + rank * heads * (m["qk_nope_head_dim"] + m["v_head_dim"])  # kv_b_proj
        + heads * m["v_head_dim"] * d  # o_proj
    )


def _mlp(doc: dict[str, Any], layer: int) -> int:
    d = doc["model"]["model_dim"]
    if arch.model_type(doc) == "llama" or layer < arch.FIRST_K_DENSE_REPLACE:
        return _dense_mlp(d, arch.resolve_intermediate_size(doc))
    moe = arch.moe_intermediate_size(doc)
    return (
        arch.N_ROUTED_EXPERTS * _dense_mlp(d, moe)  # experts.gate_up_proj + down_proj
        + arch.N_ROUTED_EXPERTS * d  # router weight
        + _dense_mlp(d, moe * arch.N_SHARED_EXPERTS)  # shared experts
    )


def parameter_count(doc: dict[str, Any]) -> int:
    """Exactly ``sum(p.numel() for p in model.parameters())`` of the model built for doc."""
    d, layers = doc["model"]["model_dim"], doc["model"]["num_hidden_layers"]
    vocab = arch.resolve_vocab_size(doc)
    per_layer = [_attention(doc) + _mlp(doc, i) + 2 * d for i in range(layers)]  # + 2 RMSNorms
    return vocab * d + sum(per_layer) + d + d * vocab  # embeddings, final norm, lm_head


def estimate(doc: dict[str, Any]) -> dict[str, Any]:
    """Parameters, resolved sizes and peak training memory per GPU (GiB) for a document."""
    params = parameter_count(doc)
    training = doc["training"]
    precision = training["precision"]
    weights = params * FP32  # fp32 master weights in every precision
    casts = params * 2 if precision != "fp32" else 0  # autocast's half-precision weight copies
    grads = params * FP32
    optimizer = 2 * params * FP32  # AdamW exp_avg and exp_avg_sq
    with_ckpt = activation_bytes(doc, checkpointing=True)
    without_ckpt = activation_bytes(doc, checkpointing=False)
    acts = with_ckpt if training["gradient_checkpointing"] else without_ckpt
    peak = weights + casts + grads + optimizer + acts
    effective_batch = (
        training["per_device_train_batch_size"]
        * training["gradient_accumulation_steps"]
        * doc["resources"]["gpus"]
    )
    return {
        "parameters": params,
        "vocab_size": arch.resolve_vocab_size(doc),
        "intermediate_size": arch.resolve_intermediate_size(doc),
        "peak_memory_gb": _gib(peak),
        "weights_gb": _gib(weights + casts),
        "gradients_gb": _gib(grads),
        "optimizer_gb": _gib(optimizer),
        "activations_gb": _gib(acts),
        "activations_gb_with_checkpointing": _gib(with_ckpt),
        "activations_gb_without_checkpointing": _gib(without_ckpt),
        "peak_memory_gb_with_checkpointing": _gib(peak - acts + with_ckpt),
        "precision": precision,
        "gradient_checkpointing": training["gradient_checkpointing"],
        "effective_batch_size": effective_batch,
        "tokens_per_step": effective_batch * doc["data"]["seq_len"],
        "warmup_steps": warmup_steps(doc),
    }


def warmup_steps(doc: dict[str, Any]) -> int:
    """Warmup length in steps: num_warmup_steps, or ceil(warmup_ratio x num_training_steps)."""
    training = doc["training"]
    if training.get("num_warmup_steps") is not None:
        return int(training["num_warmup_steps"])
    ratio = training.get("warmup_ratio") or 0.0
    # round first: 0.1 x 30 is 3.0000000000000004 in binary floating point
    return math.ceil(round(ratio * training["num_training_steps"], 6))


def _gib(n: int) -> float:
    return round(n / GIB, 3)
