"""The visual encoder's sizes (CONTRACT 5.4): optional, left out when null, so documents and
stored versions from before they existed keep their hash; and counted exactly when set."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.document import spec
from registry.document.estimate import estimate
from registry.document.presets import get_preset
from registry.document.visual import VISUAL_FIELDS

#: Hashes taken at 2bd831f, the last commit before the multimodal fields (the same documents).
MATCHING = {
    "task": "multimodal_matching",
    "model": {
        "architecture": "llama",
        "model_dim": 32,
        "num_attention_heads": 4,
        "num_hidden_layers": 1,
        "max_position_embeddings": 64,
    },
    "multimodal": {"visual_encoder_weight": 0.7, "text_encoder_weight": 0.3},
    "data": {"dataset": "builtin:shapes", "seq_len": 40},
}
HASHES_BEFORE = {
    "matching": "94a46a77785089b10058bfd7d57b2283fa5a26b7fb46235684b68384f70a0446",
    "complex-multimodal": "196bdf7c81095cf3f6b7cbcedb18d6763dcd076bfec3883eb2d7dba8f3e3c810",
    "image-text-matching": "139514ea6d4ac32fbbb31a720c547f04066e640320c32f6cf24214376cdf72d6",
}
NULLS = dict.fromkeys(VISUAL_FIELDS)


def _hash(raw: dict[str, Any]) -> str:
    result = spec.validate(raw)
    assert result.valid, result.errors
    assert result.hash is not None
    return result.hash


def test_documents_and_presets_from_before_keep_their_hash() -> None:
    assert _hash(MATCHING) == HASHES_BEFORE["matching"]
    for name in ("complex-multimodal", "image-text-matching"):
        assert _hash(get_preset(name).document) == HASHES_BEFORE[name], name


def test_null_sizes_hash_like_absent_ones_and_set_ones_are_kept() -> None:
    nulls = {**MATCHING, "multimodal": {**MATCHING["multimodal"], **NULLS}}
    assert _hash(nulls) == HASHES_BEFORE["matching"]
    assert "image_size" not in spec.normalize(nulls)["multimodal"]
    sized = {**MATCHING, "multimodal": {**MATCHING["multimodal"], "image_size": 64}}
    assert spec.normalize(sized)["multimodal"]["image_size"] == 64
    assert _hash(sized) != HASHES_BEFORE["matching"]
    assert spec.config_hash(spec.normalize(sized)) == _hash(sized)  # normalises to itself


@st.composite
def _sized(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.sampled_from([1, 2, 4]))
    patch = draw(st.sampled_from([4, 8]))
    multimodal = {
        "visual_encoder_weight": draw(st.sampled_from([0.0, 0.3, 0.7, 1.0])),
        "text_encoder_weight": draw(st.sampled_from([0.0, 0.5, 1.0])),
        "visual_hidden_size": heads * draw(st.integers(1, 8)) * 4,
        "visual_num_hidden_layers": draw(st.integers(1, 3)),
        "visual_num_attention_heads": heads,
        "image_size": patch * draw(st.integers(1, 4)),
        "patch_size": patch,
    }
    model = dict(MATCHING["model"], architecture=draw(st.sampled_from(["llama", "deepseek_v2"])))
    return {**MATCHING, "model": model, "multimodal": multimodal}


@settings(max_examples=25, deadline=None)
@given(_sized())
def test_every_accepted_matching_document_is_counted_exactly(raw: dict[str, Any]) -> None:
    from worker.matching_model import build_matcher

    doc = spec.normalize(raw)
    with torch.device("meta"):
        model = build_matcher(doc, None)
    assert sum(p.numel() for p in model.parameters()) == estimate(doc)["parameters"]
    assert (model.visual is None) == (doc["multimodal"]["visual_encoder_weight"] == 0)
