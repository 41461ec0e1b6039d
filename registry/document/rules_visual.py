"""Rules about the matching model's visual encoder (``multimodal.visual_*``, ``image_size``,
``patch_size``) and about weights that leave matching at chance (:mod:`registry.document.visual`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from registry.document import visual
from registry.document.issues import Issue, Rule, error, rule, warning


@rule(
    "multimodal.visual_hidden_size",
    "multimodal.visual_num_attention_heads",
    "multimodal.image_size",
    "multimodal.patch_size",
    "model.model_dim",
    "model.num_attention_heads",
)
def visual_encoder_shape(doc: dict[str, Any]) -> Iterator[Issue]:
    """The ViT must be buildable: heads divide its width, patches tile the image."""
    if not visual.has_visual_encoder(doc):
        return
    s = visual.visual_sizes(doc)
    if s["hidden_size"] % s["num_attention_heads"]:
        yield error(
            "multimodal.visual_hidden_size",
            f"{s['hidden_size']} is not divisible by the visual encoder's "
            f"{s['num_attention_heads']} attention heads (multimodal.visual_num_attention_heads, "
            "null: model.num_attention_heads)",
        )
    if s["patch_size"] > s["image_size"] or s["image_size"] % s["patch_size"]:
        yield error(
            "multimodal.patch_size",
            f"{s['patch_size']} does not tile images of {s['image_size']} pixels "
            "(multimodal.image_size must be a multiple of it)",
        )


@rule("task", "multimodal.visual_encoder_weight", *visual.LATER_PATHS)
def visual_fields_unused(doc: dict[str, Any]) -> Iterator[Issue]:
    """Visual sizes that no visual encoder reads are said to be ignored."""
    if visual.has_visual_encoder(doc):
        return
    for name in visual.VISUAL_FIELDS:
        if doc["multimodal"].get(name) is not None:
            yield warning(
                f"multimodal.{name}",
                "no visual encoder is built (it needs task multimodal_matching and "
                "multimodal.visual_encoder_weight > 0), so this size is not used",
            )


@rule("task", "multimodal.visual_encoder_weight", "multimodal.text_encoder_weight")
def matching_at_chance(doc: dict[str, Any]) -> Iterator[Issue]:
    """A weight of 0 removes one side of every pair: matching cannot beat chance."""
    if not visual.matches(doc):
        return
    for side, other in (("visual", "images"), ("text", "captions")):
        if doc["multimodal"][f"{side}_encoder_weight"] == 0:
            yield warning(
                f"multimodal.{side}_encoder_weight",
                f"0 leaves the {side} features out of the fusion: the model cannot tell "
                f"{other} apart, so retrieval stays at chance",
            )


CHECKS: tuple[Rule, ...] = (visual_encoder_shape, visual_fields_unused, matching_at_chance)
