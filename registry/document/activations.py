"""Activation memory of one training micro-batch (arithmetic only).

The bytes that autograd keeps for the backward pass, as a function of the normalised document;
split from :mod:`registry.document.estimate` so the measured model of activations has one home.
"""

from __future__ import annotations

from typing import Any

from registry.document import architecture as arch

#: Bytes per activation value: autocast to bf16/fp16 halves activations.
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
FP32 = 4


def _ffn_width(doc: dict[str, Any], layer: int) -> int:
    """The FFN width a token passes through in one layer (active experts for MoE)."""
    if arch.model_type(doc) == "llama" or layer < arch.FIRST_K_DENSE_REPLACE:
        return arch.resolve_intermediate_size(doc)
    active = arch.NUM_EXPERTS_PER_TOK + arch.N_SHARED_EXPERTS
    return active * arch.moe_intermediate_size(doc)


def _layer_activations(doc: dict[str, Any], layer: int, tokens: int) -> int:
    """Values kept for the backward pass by one decoder layer (eager attention)."""
    d, heads = doc["model"]["model_dim"], doc["model"]["num_attention_heads"]
    seq = doc["data"]["seq_len"]
    # norms, q/k/v, attention output, o_proj and residuals ~ 10 d; the FFN keeps its input
    # and gate/up/act outputs ~ 3 x width; attention scores and probabilities 2 x heads x seq.
    return tokens * (10 * d + 3 * _ffn_width(doc, layer) + 2 * heads * seq)


def activation_bytes(doc: dict[str, Any], checkpointing: bool) -> int:
    """Activation memory of one micro-batch, with or without gradient checkpointing."""
    tokens = doc["training"]["per_device_train_batch_size"] * doc["data"]["seq_len"]
    width = ACTIVATION_BYTES[doc["training"]["precision"]]
    layers = range(doc["model"]["num_hidden_layers"])
    full = [_layer_activations(doc, i, tokens) for i in layers]
    if checkpointing:
        # each layer keeps only its input; one layer is recomputed at a time in backward
        kept = len(full) * tokens * doc["model"]["model_dim"] + max(full, default=0)
    else:
        kept = sum(full)
    vocab = arch.resolve_vocab_size(doc)
    logits = tokens * vocab * (width + 2 * FP32)  # logits, fp32 copy for the loss, its grad
    return kept * width + logits
