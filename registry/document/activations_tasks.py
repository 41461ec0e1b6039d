"""Activation memory of the parts that classification and matching models add (arithmetic only).

:mod:`registry.document.activations` counts the text tower to the byte. A classifier or a
matching model has no vocabulary-sized output: instead a classifier saves its ``labels``-wide
logits, and a matching model its fusion (``B x B`` fused vectors of ``model_dim``, the head's
output and the scores) and, with a visual encoder, the ViT tower. These added terms are an
account by formula, not measured to the byte as the text tower is: per ViT layer and token,
the two LayerNorms' float32 inputs and statistics, the q/k/v/o inputs, q, k, v, the fused
attention's output and logsumexp, and the MLP's input, its pre-GELU output and fc2's input.
"""

from __future__ import annotations

from typing import Any

from registry.document import visual
from registry.document.datasets import builtin

ACTIVATION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
FP32 = 4


def _micro_batch(doc: dict[str, Any]) -> int:
    return int(doc["training"]["per_device_train_batch_size"])


def task_head_bytes(doc: dict[str, Any]) -> int:
    """What the classifier's or the matching model's head saves for one micro-batch (a
    ``file:`` dataset's label count is unknown until read: its logits are left out)."""
    batch, d = _micro_batch(doc), int(doc["model"]["model_dim"])
    width = ACTIVATION_BYTES[doc["training"]["precision"]]
    if not visual.matches(doc):
        found = builtin(doc["data"]["dataset"])
        labels = found.labels if found is not None else 0
        return batch * (labels or 0) * FP32 * 2  # float32 logits and their log-softmax
    pairs = batch * batch
    # the two projections' inputs and normalised outputs; the fused vectors (head's input),
    # the head's output and its square; the float32 scores and their two log-softmaxes
    features = 2 * batch * d * (width + 2 * FP32)
    return features + pairs * d * (width + 2 * FP32) + 3 * FP32 * pairs


def _vit_layer_token(doc: dict[str, Any]) -> int:
    s = visual.visual_sizes(doc)
    d, inner, heads = s["hidden_size"], s["intermediate_size"], s["num_attention_heads"]
    width = ACTIVATION_BYTES[doc["training"]["precision"]]
    norms = 2 * FP32 * (d + 2)
    attention = 4 * width * d + 3 * width * d + width * d + FP32 * heads
    mlp = width * d + 2 * width * inner
    return norms + attention + mlp


def visual_bytes(doc: dict[str, Any], checkpointing: bool) -> int:
    """The ViT tower's saved tensors for one micro-batch; 0 without a visual encoder."""
    if not visual.has_visual_encoder(doc):
        return 0
    s = visual.visual_sizes(doc)
    tokens = _micro_batch(doc) * (visual.patches(doc) + 1)
    pixels = _micro_batch(doc) * 3 * s["image_size"] ** 2 * FP32
    layer = tokens * _vit_layer_token(doc)
    layer_input = tokens * FP32 * s["hidden_size"]
    final = tokens * FP32 * (2 * s["hidden_size"] + 2)  # the final LayerNorm, the mean pool
    if checkpointing:
        return pixels + s["num_hidden_layers"] * layer_input + layer + final
    return pixels + s["num_hidden_layers"] * layer + final
