"""Activation memory of one training micro-batch (arithmetic only).

The bytes autograd keeps for the backward pass, as a function of the normalised document: a
tensor-by-tensor account of what the worker's model saves, measured with
``torch.autograd.graph.saved_tensors_hooks`` on the CPU (tests/document/test_activations.py;
the model and its assumptions are in docs/config-document.md, "Activations"). Sizes come from
:mod:`registry.document.architecture`, so grouped-query attention, latent-attention ranks and
the mixture-of-experts settings a document sets are counted as it sets them.

Every ``_..._token`` function returns bytes per token of the micro-batch.
"""

from __future__ import annotations

from typing import Any

from registry.document import architecture as arch
from registry.document.activations_tasks import task_head_bytes, visual_bytes

#: Bytes per activation value: autocast to bf16/fp16 halves what the matrix products save.
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
FP32 = 4
INDEX = 8  # int64 token ids, targets and expert indices
#: Attention implementations the estimate knows: transformers' ``attn_implementation`` values.
ATTENTION = ("sdpa", "eager", "flash_attention_2")


def _inputs(width: int, consumers: int) -> int:
    """Bytes per value saved as the input of `consumers` linears reading one float32 tensor.

    In float32 they share the tensor; under autocast each linear saves its own cast copy.
    """
    return FP32 if width == FP32 else consumers * width


def _rms_norm_token(d: int) -> int:
    """RMSNorm on the float32 residual stream: its input, 1/rms and the normalised values."""
    return FP32 * (2 * d + 1)


def _low_rank_norm_token(rank: int, stored: int, width: int) -> int:
    """RMSNorm on a latent of `rank` values (a linear's output), plus the next linear's input.

    `stored` is the width of the storage the norm's float32 input lives in (in float32 the
    norm saves a view of the whole projection output; under autocast a float32 copy).
    """
    return FP32 * (stored + 1) + width * rank + _inputs(width, 1) * rank


def attention_kernel(doc: dict[str, Any], attention: str = "sdpa") -> str:
    """What the attention saves: ``fused`` (flash-style: q, k, v, output and logsumexp),
    ``math`` (probabilities, SDPA's fallback) or ``eager`` (probabilities, transformers' own).

    SDPA on the CPU runs its fused kernel only when query, key and value heads have one size;
    DeepSeek-V2's latent attention (qk = nope + rope > v) falls back to the math kernel.
    """
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, not {attention!r}")
    if attention == "eager":
        return "eager"
    if attention == "flash_attention_2" or arch.model_type(doc) == "llama":
        return "fused"
    m = arch.mla_dims(doc)
    same = m["qk_nope_head_dim"] + m["qk_rope_head_dim"] == m["v_head_dim"]
    return "fused" if same else "math"


def _core_token(doc: dict[str, Any], sizes: dict[str, int], kernel: str, width: int) -> int:
    """The attention product itself and o_proj's input, per token.

    sizes: heads, kv_heads, qk (query/key head size), v (value head size), v_store (values
    per token of the storage the product's value operand lives in) and outputs (storages of
    the fused kernel's output: 1 when o_proj's input shares it, else 2).
    """
    heads, seq = sizes["heads"], doc["data"]["seq_len"]
    qk, v = sizes["qk"], sizes["v"]
    out = width * heads * v  # the output, which o_proj saves as its input
    if kernel == "fused":
        keys = sizes["kv_heads"] * qk
        # the kernel's output is saved too; o_proj's input shares it when the kernel wrote it
        # token-major (Llama's strided query), else o_proj saves the token-major copy
        outputs = out * sizes["outputs"]
        return width * (heads * qk + keys + sizes["v_store"]) + outputs + FP32 * heads  # + lse
    probs = FP32 * heads * seq  # the softmax output, one row of seq per head and token
    if kernel == "math":  # the CPU math kernel computes in float32: scaled q and k, v
        values = sizes["v_store"] if width == FP32 else heads * v  # else a float32 copy
        return FP32 * (heads * 2 * qk + values) + probs + out
    cast = width * heads * seq if width != FP32 else 0  # probabilities cast for the product
    return width * (2 * heads * qk + sizes["v_store"]) + probs + cast + out


def _llama_attention_token(doc: dict[str, Any], kernel: str, width: int) -> int:
    d, heads = doc["model"]["model_dim"], doc["model"]["num_attention_heads"]
    head = d // heads
    kv = arch.kv_heads(doc)
    v_store = heads * head if kernel == "eager" else kv * head
    sizes = {"heads": heads, "kv_heads": kv, "qk": head, "v": head, "v_store": v_store}
    sizes["outputs"] = 1
    return _inputs(width, 3) * d + _core_token(doc, sizes, kernel, width)  # q, k, v inputs


def _mla_attention_token(doc: dict[str, Any], kernel: str, width: int) -> int:
    """DeepSeek-V2 latent attention: projections, the latent norms, then the product."""
    d, heads = doc["model"]["model_dim"], doc["model"]["num_attention_heads"]
    m = arch.mla_dims(doc)
    rank, rope = int(m["kv_lora_rank"]), int(m["qk_rope_head_dim"])
    nope, v = int(m["qk_nope_head_dim"]), int(m["v_head_dim"])
    total = _inputs(width, 2) * d  # q_proj (or q_a_proj) and kv_a_proj_with_mqa
    kv_stored = rank + rope if width == FP32 else rank
    total += _low_rank_norm_token(rank, kv_stored, width)  # kv_a_layernorm, kv_b_proj input
    if m["q_lora_rank"] is not None:
        q_rank = int(m["q_lora_rank"])
        total += _low_rank_norm_token(q_rank, q_rank, width)  # q_a_layernorm, q_b_proj input
    sizes = {"heads": heads, "kv_heads": heads, "qk": nope + rope, "v": v, "outputs": 2}
    # the values are a strided view of kv_b_proj's output: the fused kernel and one-sequence
    # batches use the view (the whole output stays), batched products copy them
    viewed = kernel == "fused" or doc["training"]["per_device_train_batch_size"] == 1
    sizes["v_store"] = heads * (nope + v) if viewed else heads * v
    return total + _core_token(doc, sizes, kernel, width)


def _dense_mlp_token(d: int, inner: int, width: int) -> int:
    """gate/up inputs, then gate, up, act(gate) and act(gate) x up, each `inner` wide."""
    return _inputs(width, 2) * d + 4 * width * inner


def _moe_token(doc: dict[str, Any], width: int) -> int:
    """DeepSeek-V2 MoE (grouped_mm experts): router, routed slots, shared experts.

    The routed experts run in the autocast dtype (the worker's experts implementation,
    worker/moe.py, casts their input, weights and routing weights): per routed slot the
    gathered input, gate_up output, act, product, expert output (d, 2m, m, m, d values), its
    routing weight and three int64 indices. With a balance loss (``aux_loss_alpha`` set, 0
    included) its float32 softmax of the router's logits, one row of experts per token.
    """
    d, moe = doc["model"]["model_dim"], arch.moe_settings(doc)
    experts, per_token = int(moe["n_routed_experts"]), int(moe["num_experts_per_tok"])
    inner, shared = int(moe["moe_intermediate_size"]), int(moe["n_shared_experts"] or 0)
    # router, shared gate_proj and up_proj (n_shared_experts 0 leaves them zero-wide, and
    # under autocast they still save a cast of their input)
    readers = 3
    router = FP32 * experts + INDEX * per_token  # softmax scores, top-k indices
    if moe["topk_method"] == "group_limited_greedy":
        router += experts  # the boolean mask of the experts outside the chosen groups
    if _balance_loss(doc):
        router += FP32 * experts
    slot = width * (2 * d + 4 * inner + 1) + 3 * INDEX
    return _inputs(width, readers) * d + router + per_token * slot + 4 * width * shared * inner


def _balance_loss(doc: dict[str, Any]) -> bool:
    """Whether the training loss adds DeepSeek-V2's balance loss (worker/moe.py)."""
    return (doc["model"].get("moe") or {}).get("aux_loss_alpha") is not None


def _is_moe_layer(doc: dict[str, Any], layer: int) -> bool:
    first_dense = int(arch.moe_settings(doc)["first_k_dense_replace"] or 0)
    return arch.model_type(doc) == "deepseek_v2" and layer >= first_dense


def _layer_bytes(doc: dict[str, Any], layer: int, attention: str) -> int:
    """Bytes one decoder layer saves for the micro-batch (its input included)."""
    d = doc["model"]["model_dim"]
    width = ACTIVATION_BYTES[doc["training"]["precision"]]
    kernel = attention_kernel(doc, attention)
    tokens = _tokens(doc)
    if arch.model_type(doc) == "llama":
        attn = _llama_attention_token(doc, kernel, width)
    else:
        attn = _mla_attention_token(doc, kernel, width)
    if _is_moe_layer(doc, layer):
        # grouped_mm's int32 expert offsets; the balance loss's float32 shares f_i
        experts = int(arch.moe_settings(doc)["n_routed_experts"])
        per_layer = FP32 * experts * (2 if _balance_loss(doc) else 1)
        return tokens * (2 * _rms_norm_token(d) + attn + _moe_token(doc, width)) + per_layer
    mlp = _dense_mlp_token(d, arch.resolve_intermediate_size(doc), width)
    return tokens * (2 * _rms_norm_token(d) + attn + mlp)


def _tokens(doc: dict[str, Any]) -> int:
    return int(doc["training"]["per_device_train_batch_size"]) * int(doc["data"]["seq_len"])


def _rope_bytes(doc: dict[str, Any]) -> int:
    """The rotary tables, shared by every layer and sequence: cos and sin, or complex freqs."""
    seq, d = doc["data"]["seq_len"], doc["model"]["model_dim"]
    if arch.model_type(doc) == "llama":
        return 2 * FP32 * seq * (d // doc["model"]["num_attention_heads"])
    return FP32 * seq * arch.mla_dims(doc)["qk_rope_head_dim"]  # complex64, rope / 2 each


def _head_bytes(doc: dict[str, Any]) -> int:
    """Token ids, the final norm, lm_head's input, the float32 log-softmax, targets and loss.

    A classifier or matching model has no lm_head: its head is :mod:`activations_tasks`'."""
    d, width = doc["model"]["model_dim"], ACTIVATION_BYTES[doc["training"]["precision"]]
    per_token = INDEX + _rms_norm_token(d) + _inputs(width, 1) * d
    if doc.get("task", "causal_lm") != "causal_lm":
        return _tokens(doc) * per_token + FP32 + task_head_bytes(doc)
    per_token += FP32 * arch.resolve_vocab_size(doc) + INDEX
    return _tokens(doc) * per_token + FP32


def activation_bytes(doc: dict[str, Any], checkpointing: bool, attention: str = "sdpa") -> int:
    """Peak bytes autograd holds for one micro-batch, with or without gradient checkpointing.

    Without checkpointing: everything the forward pass saves. With it: the larger of the end
    of the forward pass (the head's tensors and each layer's float32 input) and the backward
    pass recomputing layer i (token ids and targets,
    the inputs of layers 0..i and all of layer i).
    """
    layers = [_layer_bytes(doc, i, attention) for i in range(doc["model"]["num_hidden_layers"])]
    towers = visual_bytes(doc, checkpointing)  # a matching model's ViT; 0 for the others
    if not checkpointing:
        return _head_bytes(doc) + _rope_bytes(doc) + sum(layers) + towers
    layer_input = _tokens(doc) * FP32 * doc["model"]["model_dim"]
    forward_end = _head_bytes(doc) + len(layers) * layer_input
    recompute = max((i * layer_input + b for i, b in enumerate(layers)), default=0)
    backward = _tokens(doc) * 2 * INDEX + _rope_bytes(doc) + recompute  # + ids, targets
    return max(forward_end, backward) + towers
