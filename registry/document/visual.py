"""``task: multimodal_matching``: the sizes of the matching model, and its exact parameter count.

The model (built by :mod:`worker.matching_model`) has up to four parts:

- the **text encoder**: the document's own architecture (``model``) without lm_head, read at the
  last caption token that is not padding, then ``text_proj`` (``model_dim x model_dim``, no bias);
- the **visual encoder**: a ViT (transformers' ``ViTModel``, no pooler) sized by the
  ``multimodal.visual_*`` fields, read at its CLS token, then ``visual_proj``
  (``visual_hidden_size x model_dim``, no bias). It is built only when
  ``multimodal.visual_encoder_weight`` > 0: a weight of 0 builds none and loads no image;
- the **fusion**: both features are L2-normalised, then ``visual_encoder_weight x v +
  text_encoder_weight x t`` (the guide's "share of the visual features in the fusion", 3.2.1);
- the **matching head** reads the fused vector f: ``score = exp(logit_scale) x |W f + b|^2``
  (``W`` is ``model_dim x model_dim``; ``logit_scale`` starts at 2.3, CLIP's 1/0.1).

What the weights do, exactly: with ``A = W^T W``, the score of image features v and caption
features t is ``exp(s) x (w_v^2 v.Av + w_t^2 t.At + 2 w_v w_t v.At + 2 b.W(w_v v + w_t t) + b.b)``.
Only the cross term ``2 w_v w_t v.At`` tells a matching pair from another; the terms in
``w_v^2`` and ``w_t^2`` are each modality's own prior (how likely an image, or a caption, is to
match anything). So ``w_v`` and ``w_t`` set the balance between the pair evidence and each
side's prior, and how fast each encoder learns (its gradients scale with its weight). A weight
of 0 removes that side: with ``w_v = 0`` every image gets the same score for a caption and
retrieval is chance.

Nothing here imports torch or transformers, so the estimate counts what the worker builds.
"""

from __future__ import annotations

from typing import Any

#: What a null ``multimodal.image_size`` / ``patch_size`` means (builtin:shapes renders 32 px).
IMAGE_SIZE, PATCH_SIZE = 32, 8
#: ViT's convention: the MLP is four times as wide as the hidden size.
VIT_MLP_RATIO = 4
#: The multimodal fields added for matching, each left out of the document when null.
VISUAL_FIELDS: tuple[str, ...] = (
    "visual_hidden_size",
    "visual_num_hidden_layers",
    "visual_num_attention_heads",
    "image_size",
    "patch_size",
)
#: Their dotted paths in the document.
LATER_PATHS: tuple[str, ...] = tuple(f"multimodal.{name}" for name in VISUAL_FIELDS)


def matches(doc: dict[str, Any]) -> bool:
    """The document trains an image-caption matching model."""
    return doc.get("task") == "multimodal_matching"


def has_visual_encoder(doc: dict[str, Any]) -> bool:
    """A matching model builds a visual encoder only for a visual weight above 0."""
    return matches(doc) and float(doc["multimodal"]["visual_encoder_weight"]) > 0


def visual_sizes(doc: dict[str, Any]) -> dict[str, int]:
    """The ViT's sizes: each null field derived from the text model (or the defaults above)."""
    m, model = doc["multimodal"], doc["model"]

    def pick(name: str, default: int) -> int:
        value = m.get(name)
        return int(value) if value is not None else int(default)

    hidden = pick("visual_hidden_size", model["model_dim"])
    return {
        "hidden_size": hidden,
        "num_hidden_layers": pick("visual_num_hidden_layers", model["num_hidden_layers"]),
        "num_attention_heads": pick("visual_num_attention_heads", model["num_attention_heads"]),
        "intermediate_size": VIT_MLP_RATIO * hidden,
        "image_size": pick("image_size", IMAGE_SIZE),
        "patch_size": pick("patch_size", PATCH_SIZE),
    }


def vit_config_kwargs(doc: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for transformers' ``ViTConfig`` (3 colour channels, no dropout)."""
    return visual_sizes(doc) | {
        "num_channels": 3,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }


def patches(doc: dict[str, Any]) -> int:
    """Patch tokens per image (the CLS token comes on top)."""
    s = visual_sizes(doc)
    return (s["image_size"] // s["patch_size"]) ** 2


def vit_parameters(doc: dict[str, Any]) -> int:
    """``sum(p.numel())`` of ``ViTModel(config, add_pooling_layer=False)``.

    CLS token and position embeddings (patches + 1), the patch projection (a conv with bias),
    per layer q/k/v/o with biases, two LayerNorms and the MLP with biases, the final LayerNorm.
    """
    s = visual_sizes(doc)
    d, inner, p = s["hidden_size"], s["intermediate_size"], s["patch_size"]
    embeddings = d + (patches(doc) + 1) * d + 3 * p * p * d + d
    layer = 4 * (d * d + d) + 2 * 2 * d + (d * inner + inner) + (inner * d + d)
    return embeddings + s["num_hidden_layers"] * layer + 2 * d


def visual_parameters(doc: dict[str, Any]) -> int:
    """The visual encoder and its projection; 0 when the document builds none."""
    if not has_visual_encoder(doc):
        return 0
    return vit_parameters(doc) + visual_sizes(doc)["hidden_size"] * doc["model"]["model_dim"]


def fusion_parameters(doc: dict[str, Any]) -> int:
    """``text_proj`` and the matching head (the text tower itself is the estimate's)."""
    d = doc["model"]["model_dim"]
    return d * d + (d * d + d) + 1  # text_proj; head; logit_scale
