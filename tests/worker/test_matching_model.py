"""The matching model: built exactly as the estimate counts it, with no visual encoder at a
visual weight of 0, and scores that do not depend on the image then."""

from __future__ import annotations

import pytest
import torch

from registry.document.estimate import estimate
from registry.document.visual import vit_parameters
from tests.support.worker import matching_doc
from worker.matching_model import build_matcher

SHAPES = [
    ("llama", 0.7, {}),
    ("deepseek_v2", 0.6, {"visual_hidden_size": 48, "visual_num_hidden_layers": 3,
                          "visual_num_attention_heads": 4, "image_size": 24, "patch_size": 6}),
    ("llama", 1.0, {"image_size": 16, "patch_size": 16}),
]  # fmt: skip


@pytest.mark.parametrize(("architecture", "visual", "sizes"), SHAPES)
def test_built_parameters_are_the_estimate(architecture: str, visual: float, sizes: dict) -> None:
    doc = matching_doc(visual, model={"architecture": architecture}, multimodal=sizes)
    model = build_matcher(doc, 259)
    assert sum(p.numel() for p in model.parameters()) == estimate(doc)["parameters"]
    assert model.visual is not None
    assert sum(p.numel() for p in model.visual.parameters()) == vit_parameters(doc)
    assert model.visual.config.hidden_size == sizes.get("visual_hidden_size", 32)


def test_a_visual_weight_of_0_builds_no_visual_encoder() -> None:
    doc, seeing = matching_doc(0.0), matching_doc(0.7)
    model = build_matcher(doc, 259)
    assert model.visual is None and model.visual_proj is None
    names = [type(m).__name__ for m in model.modules()]
    assert not [n for n in names if n.startswith("ViT")], names
    counted = sum(p.numel() for p in model.parameters())
    assert counted == estimate(doc)["parameters"]
    assert estimate(seeing)["parameters"] - counted == vit_parameters(seeing) + 32 * 32
    assert estimate(seeing)["visual_encoder_parameters"] == vit_parameters(seeing) + 32 * 32
    assert estimate(doc)["visual_encoder_parameters"] == 0
    ids = torch.randint(3, 259, (5, 12))
    scores = model.scores(None, ids, 3)
    assert scores.shape == (3, 5) and torch.equal(scores[0], scores[2])  # images are alike


def test_the_weights_scale_the_fusion() -> None:
    torch.manual_seed(0)
    model = build_matcher(matching_doc(0.7), 259).eval()
    ids, images = torch.randint(3, 259, (4, 12)), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = model.scores(images, ids, 2)
        model.visual_weight = 0.0  # the fused vector then holds the caption alone
        blind = model.scores(images, ids, 2)
    assert not torch.equal(before[0], before[1])
    assert torch.equal(blind[0], blind[1])


def test_gradient_checkpointing_reaches_both_towers() -> None:
    model = build_matcher(matching_doc(0.7, training={"gradient_checkpointing": True}), 259)
    assert model.visual is not None
    assert model.text.is_gradient_checkpointing and model.visual.is_gradient_checkpointing
