"""Parameter count, FLOPs and training memory of a normalised document (arithmetic only).

The parameter count is exact for the model :mod:`registry.document.architecture` builds; the
memory figures are estimates (see docs/config-document.md for the formulas and assumptions).
"""

from __future__ import annotations

import math
from typing import Any

from registry.document import architecture as arch
from registry.document import visual
from registry.document.activations import activation_bytes

GIB = 1024**3
FP32 = 4
#: Bytes each parameter holds in training: fp32 master weights, fp32 gradients, AdamW's two
#: fp32 states; autocast adds a half-precision copy of the weights in bf16/fp16.
WEIGHT_BYTES, GRADIENT_BYTES, OPTIMIZER_BYTES, CAST_BYTES = 4, 4, 8, 2
#: Bytes per value of a gathered (unsharded) unit under fully sharded data parallel.
COMPUTE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def _dense_mlp(d: int, inner: int) -> int:
    return 3 * d * inner  # gate_proj, up_proj, down_proj; no biases


def _attention(doc: dict[str, Any]) -> int:
    d, heads = doc["model"]["model_dim"], doc["model"]["num_attention_heads"]
    if arch.model_type(doc) == "llama":
        head_dim = d // heads
        kv = arch.kv_heads(doc) * head_dim
        return 2 * d * heads * head_dim + 2 * d * kv  # q_proj, o_proj; k_proj, v_proj
    m = arch.mla_dims(doc)
    qk, rank, q_rank = (
        m["qk_nope_head_dim"] + m["qk_rope_head_dim"],
        m["kv_lora_rank"],
        m["q_lora_rank"],
    )
    return (
        _query(d, heads * qk, q_rank)
        + d * (rank + m["qk_rope_head_dim"])  # kv_a_proj_with_mqa
        + rank  # kv_a_layernorm
        + rank * heads * (m["qk_nope_head_dim"] + m["v_head_dim"])  # kv_b_proj
        + heads * m["v_head_dim"] * d  # o_proj
    )


def _query(d: int, width: int, q_rank: int | None) -> int:
    if q_rank is None:
        return d * width  # q_proj
    return d * q_rank + q_rank + q_rank * width  # q_a_proj, q_a_layernorm, q_b_proj


def _is_moe(doc: dict[str, Any], layer: int) -> bool:
    if arch.model_type(doc) == "llama":
        return False
    return layer >= int(arch.moe_settings(doc)["first_k_dense_replace"])


def _expert(doc: dict[str, Any]) -> int:
    """Parameters of one routed expert (gate, up and down projections)."""
    return _dense_mlp(doc["model"]["model_dim"], arch.moe_intermediate_size(doc))


def _mlp(doc: dict[str, Any], layer: int) -> int:
    d = doc["model"]["model_dim"]
    if not _is_moe(doc, layer):
        return _dense_mlp(d, arch.resolve_intermediate_size(doc))
    moe = arch.moe_settings(doc)
    routed = int(moe["n_routed_experts"])
    shared = arch.moe_intermediate_size(doc) * int(moe["n_shared_experts"])
    # experts.gate_up_proj + experts.down_proj, the router's weight (no bias in DeepSeek-V2),
    # and the shared experts as one MLP of n_shared x moe_intermediate_size
    return routed * _expert(doc) + routed * d + _dense_mlp(d, shared)


def _layer(doc: dict[str, Any], layer: int) -> int:
    return _attention(doc) + _mlp(doc, layer) + 2 * doc["model"]["model_dim"]  # + 2 RMSNorms


def _embedding(doc: dict[str, Any]) -> int:
    return arch.resolve_vocab_size(doc) * doc["model"]["model_dim"]


def num_labels(doc: dict[str, Any]) -> int | None:
    """The label count of a classification document's dataset: the built-in catalog's, or
    None for a ``file:`` dataset (its labels are known only once the worker reads it)."""
    from registry.document.datasets import builtin

    found = builtin(doc["data"]["dataset"])
    return found.labels if found is not None else None


def _classifies(doc: dict[str, Any]) -> bool:
    return doc.get("task") == "classification"


def _text_only(doc: dict[str, Any]) -> bool:
    """The model reads text into labels or features: no vocabulary-sized output layer."""
    return _classifies(doc) or visual.matches(doc)


def _head(doc: dict[str, Any]) -> int:
    """lm_head (none when tied); for classification the score head (labels x model_dim, no
    bias; left out when the label count is unknown, see :func:`num_labels`); for matching the
    text projection, the matching head and the visual encoder (:mod:`registry.document.visual`)."""
    if _classifies(doc):
        return (num_labels(doc) or 0) * doc["model"]["model_dim"]
    if visual.matches(doc):
        return visual.fusion_parameters(doc) + visual.visual_parameters(doc)
    return 0 if arch.tied(doc) else _embedding(doc)


def parameter_count(doc: dict[str, Any]) -> int:
    """Exactly ``sum(p.numel() for p in model.parameters())`` of the model built for doc.

    Embeddings, the decoder layers, the final RMSNorm and lm_head; a tied lm_head shares the
    embedding matrix and is counted once, as ``model.parameters()`` yields it once. A
    classifier has the score head instead of lm_head, a matching model its visual encoder and
    fusion (:func:`_head`).
    """
    layers = sum(_layer(doc, i) for i in range(doc["model"]["num_hidden_layers"]))
    return _embedding(doc) + layers + doc["model"]["model_dim"] + _head(doc)


def _moe_layers(doc: dict[str, Any]) -> int:
    return sum(_is_moe(doc, i) for i in range(doc["model"]["num_hidden_layers"]))


def active_parameter_count(doc: dict[str, Any]) -> int:
    """Parameters used per token: all of them but the routed experts a token is not sent to.

    ``parameters - MoE layers x (n_routed_experts - num_experts_per_tok) x expert``; the
    router, the shared experts, attention, norms, embeddings and lm_head all count. Equal to
    :func:`parameter_count` for dense models (CONTRACT 5.6).
    """
    if not _moe_layers(doc):
        return parameter_count(doc)
    moe = arch.moe_settings(doc)
    idle = int(moe["n_routed_experts"]) - int(moe["num_experts_per_tok"])
    return parameter_count(doc) - _moe_layers(doc) * idle * _expert(doc)


def compute_parameter_count(doc: dict[str, Any]) -> int:
    """Active parameters a token multiplies with: the input embedding is a row lookup.

    ``active_parameters`` minus the embedding matrix, unless tied (then it is lm_head's weight,
    which every token multiplies with). The papers' "activated parameters" count this way.
    """
    lookup = _text_only(doc) or not arch.tied(doc)  # these multiply with no vocab matrix
    return active_parameter_count(doc) - (_embedding(doc) if lookup else 0)


def attention_flops_per_token(doc: dict[str, Any]) -> int:
    """Training FLOPs of the attention scores and their weighted sum, per token.

    Forward ``2 x seq_len x heads x (qk + v)`` per layer (each token against the full
    ``data.seq_len``, as eager and SDPA attention compute it), backward twice that.
    """
    model = doc["model"]
    heads = model["num_attention_heads"]
    if arch.model_type(doc) == "llama":
        qk = v = model["model_dim"] // heads
    else:
        m = arch.mla_dims(doc)
        qk, v = m["qk_nope_head_dim"] + m["qk_rope_head_dim"], m["v_head_dim"]
    return 6 * model["num_hidden_layers"] * doc["data"]["seq_len"] * heads * (qk + v)


def training_flops_per_token(doc: dict[str, Any]) -> int:
    """6 x the parameters a token multiplies with (forward 2, backward 4) + attention's term."""
    return 6 * compute_parameter_count(doc) + attention_flops_per_token(doc)


def _largest_unit(doc: dict[str, Any]) -> int:
    """Parameters of the largest unit FSDP gathers at once: a decoder layer or an embedding."""
    layers = [_layer(doc, i) for i in range(doc["model"]["num_hidden_layers"])]
    return max([_embedding(doc), *layers])


def _state_bytes(doc: dict[str, Any], params: int) -> dict[str, int]:
    casts = CAST_BYTES * params if doc["training"]["precision"] != "fp32" else 0
    return {
        "weights": WEIGHT_BYTES * params + casts,
        "gradients": GRADIENT_BYTES * params,
        "optimizer": OPTIMIZER_BYTES * params,
    }


def _fully_sharded(doc: dict[str, Any], params: int, gpus: int) -> int:
    """Model state per device when parameters, gradients and AdamW state are split over gpus.

    Each device keeps its 1/gpus share in fp32 (16 bytes a parameter) plus three unsharded
    units at the compute precision: the unit computing, the one prefetched and one unit's
    gradient before its reduce-scatter. One device shards nothing: the data-parallel figure.
    """
    if gpus <= 1:
        return sum(_state_bytes(doc, params).values())
    shard = (WEIGHT_BYTES + GRADIENT_BYTES + OPTIMIZER_BYTES) * params
    gathered = 3 * _largest_unit(doc) * COMPUTE_BYTES[doc["training"]["precision"]]
    return math.ceil(shard / gpus) + gathered


def memory_per_device(doc: dict[str, Any], params: int) -> dict[str, dict[str, float]]:
    """GiB per device: data parallel and fully sharded, with and without checkpointing."""
    gpus = int(doc["resources"]["gpus"])
    states = {
        "data_parallel": sum(_state_bytes(doc, params).values()),
        "fully_sharded": _fully_sharded(doc, params, gpus),
    }
    acts = {
        "with_checkpointing": activation_bytes(doc, checkpointing=True),
        "without_checkpointing": activation_bytes(doc, checkpointing=False),
    }
    return {mode: {k: _gib(s + a) for k, a in acts.items()} for mode, s in states.items()}


def gpus_to_fit(doc: dict[str, Any], params: int) -> int | None:
    """The fewest devices that fit gpu_memory_gb fully sharded with checkpointing, if any do.

    The micro-batch's activations stay on every device, so a batch that does not fit one
    device alone (with the gathered units) fits no number of them: None.
    """
    budget = doc["resources"]["gpu_memory_gb"] * GIB
    if memory_per_device(doc, params)["data_parallel"]["with_checkpointing"] * GIB <= budget:
        return 1
    gathered = 3 * _largest_unit(doc) * COMPUTE_BYTES[doc["training"]["precision"]]
    room = budget - activation_bytes(doc, checkpointing=True) - gathered
    if room <= 0:
        return None
    shard = (WEIGHT_BYTES + GRADIENT_BYTES + OPTIMIZER_BYTES) * params
    return max(2, math.ceil(shard / room))


def estimate(doc: dict[str, Any]) -> dict[str, Any]:
    """Parameters, FLOPs, resolved sizes and training memory per device (GiB) for a document.

    ``peak_memory_gb`` is what the worker runs: plain data parallel (a full copy of the model
    state on each of resources.gpus devices) with the document's gradient_checkpointing;
    ``memory_per_device_gb`` adds fully sharded data parallel and the other setting.
    """
    params = parameter_count(doc)
    training = doc["training"]
    states = _state_bytes(doc, params)
    with_ckpt = activation_bytes(doc, checkpointing=True)
    without_ckpt = activation_bytes(doc, checkpointing=False)
    acts = with_ckpt if training["gradient_checkpointing"] else without_ckpt
    peak = sum(states.values()) + acts
    per_device = memory_per_device(doc, params)
    chosen = "with_checkpointing" if training["gradient_checkpointing"] else "without_checkpointing"
    return {
        "parameters": params,
        "active_parameters": active_parameter_count(doc),
        "compute_parameters": compute_parameter_count(doc),
        "training_flops_per_token": training_flops_per_token(doc),
        "attention_flops_per_token": attention_flops_per_token(doc),
        "vocab_size": arch.resolve_vocab_size(doc),
        "intermediate_size": arch.resolve_intermediate_size(doc),
        "peak_memory_gb": _gib(peak),
        "weights_gb": _gib(states["weights"]),
        "gradients_gb": _gib(states["gradients"]),
        "optimizer_gb": _gib(states["optimizer"]),
        "activations_gb": _gib(acts),
        "activations_gb_with_checkpointing": _gib(with_ckpt),
        "activations_gb_without_checkpointing": _gib(without_ckpt),
        "peak_memory_gb_with_checkpointing": _gib(peak - acts + with_ckpt),
        "peak_memory_gb_fully_sharded": per_device["fully_sharded"][chosen],
        "memory_per_device_gb": per_device,
        "gpus": doc["resources"]["gpus"],
        "gpus_to_fit_fully_sharded": gpus_to_fit(doc, params),
        "precision": training["precision"],
        "gradient_checkpointing": training["gradient_checkpointing"],
        **_batch_and_visual(doc),
    }


def _batch_and_visual(doc: dict[str, Any]) -> dict[str, int]:
    """The batch figures; for a matching document also its visual encoder (ViT and
    projection) within ``parameters``."""
    figures = _batch_sizes(doc)
    if visual.matches(doc):
        figures["visual_encoder_parameters"] = visual.visual_parameters(doc)
    return figures


def _batch_sizes(doc: dict[str, Any]) -> dict[str, int]:
    training = doc["training"]
    effective_batch = (
        training["per_device_train_batch_size"]
        * training["gradient_accumulation_steps"]
        * doc["resources"]["gpus"]
    )
    return {
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
