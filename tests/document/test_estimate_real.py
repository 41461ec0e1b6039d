"""The published models: the estimate equals transformers' own count, built on the meta device.

The meta device allocates nothing, so DeepSeek-V2's 236 billion parameters build in seconds.
"""

from __future__ import annotations

import pytest

from registry.document.estimate import estimate
from tests.support.architectures import REAL_MODELS, meta_parameter_count, shaped

pytest.importorskip("transformers")


@pytest.mark.parametrize("name", REAL_MODELS)
def test_the_estimate_is_the_published_total(name: str) -> None:
    model, total, _ = REAL_MODELS[name]
    doc = shaped(model)
    assert meta_parameter_count(doc) == total
    assert estimate(doc)["parameters"] == total


@pytest.mark.parametrize("name", ["deepseek-v2", "deepseek-v2-lite"])
def test_activated_parameters_are_the_papers(name: str) -> None:
    """compute_parameters (no input embedding) within 5 % of the papers' activated figure."""
    model, _, paper = REAL_MODELS[name]
    e = estimate(shaped(model))
    assert e["compute_parameters"] == pytest.approx(paper, rel=0.05)
    assert (
        e["active_parameters"] == e["compute_parameters"] + model["vocab_size"] * model["model_dim"]
    )


@pytest.mark.parametrize("name", ["llama-3-8b", "llama-2-7b"])
def test_dense_models_use_every_parameter(name: str) -> None:
    model, total, _ = REAL_MODELS[name]
    e = estimate(shaped(model))
    assert e["active_parameters"] == total  # CONTRACT 5.6
    assert e["compute_parameters"] == total - model["vocab_size"] * model["model_dim"]


def test_deepseek_v2_figures() -> None:
    """The definitions worked by hand for DeepSeek-V2 (docs/config-document.md)."""
    e = estimate(shaped(REAL_MODELS["deepseek-v2"][0], data={"seq_len": 4096}))
    expert = 3 * 5120 * 1536
    assert e["active_parameters"] == 235_741_434_880 - 59 * (160 - 6) * expert
    assert e["compute_parameters"] == e["active_parameters"] - 102400 * 5120
    attention = 6 * 60 * 4096 * 128 * (192 + 128)
    assert e["training_flops_per_token"] == 6 * e["compute_parameters"] + attention
