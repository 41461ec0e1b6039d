"""The ``multimodal`` section: the encoder weights of the fusion, and the visual encoder's sizes.

The two weights are the guide's (3.2.1); what they do is :mod:`registry.document.visual`'s
docstring. The visual encoder's sizes were added for ``task: multimodal_matching`` (CONTRACT
5.4): each is optional and null means "derived" (:func:`registry.document.visual.visual_sizes`),
and :func:`drop_unset` leaves nulls out of the normalised document, so every document that does
not set them keeps its hash.
"""

from __future__ import annotations

from typing import Any

from registry.document.spec_types import ADDED_DECEMBER_2026, Float, Int, Section
from registry.document.spec_types import spec_field as _f
from registry.document.visual import IMAGE_SIZE, LATER_PATHS, PATCH_SIZE, VISUAL_FIELDS

_ADDED = {"x-added": ADDED_DECEMBER_2026}


class MultimodalSection(Section):
    """How visual and text features are weighted in multimodal fusion."""

    visual_encoder_weight: Float = _f(
        0.0,
        "Share of the visual features in the fusion (w_v x image + w_t x caption features, "
        "both L2-normalised); 0 builds no visual encoder at all.",
        "0.6-0.8 for image-text matching; 0 for text-only tasks",
        minimum=0,
        maximum=1,
    )
    text_encoder_weight: Float = _f(
        1.0,
        "Share of the text features in the fusion.",
        "1 - visual_encoder_weight",
        minimum=0,
        maximum=1,
    )
    visual_hidden_size: Int | None = _f(
        None,
        "Width of the visual encoder (a ViT) for multimodal_matching; null: model.model_dim.",
        exclusiveMinimum=0,
        **_ADDED,
    )
    visual_num_hidden_layers: Int | None = _f(
        None,
        "ViT layers; null: model.num_hidden_layers.",
        exclusiveMinimum=0,
        **_ADDED,
    )
    visual_num_attention_heads: Int | None = _f(
        None,
        "ViT attention heads (visual_hidden_size must be divisible by them); null: "
        "model.num_attention_heads.",
        exclusiveMinimum=0,
        **_ADDED,
    )
    image_size: Int | None = _f(
        None,
        f"Images are resized to this many pixels square; null: {IMAGE_SIZE}.",
        exclusiveMinimum=0,
        **_ADDED,
    )
    patch_size: Int | None = _f(
        None,
        f"ViT patch side in pixels (image_size must be divisible by it); null: {PATCH_SIZE}.",
        exclusiveMinimum=0,
        **_ADDED,
    )


#: The multimodal fields added for matching, by dotted path (each left out when null).
LATER_MULTIMODAL_FIELDS: tuple[str, ...] = LATER_PATHS


def drop_unset(multimodal: dict[str, Any]) -> dict[str, Any]:
    """The multimodal section without the visual sizes that are null ("derived")."""
    return {k: v for k, v in multimodal.items() if not (k in VISUAL_FIELDS and v is None)}
