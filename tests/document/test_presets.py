"""Presets: one per scenario of the guide, each valid and stored normalised."""

from __future__ import annotations

import pytest

from registry.document import spec
from registry.document.presets import get_preset, list_presets
from registry.errors import NotFound

GUIDE = {
    "lightweight-classification": "2.1.1",
    "complex-multimodal": "2.1.1",
    "structured-output": "3.1.1",
    "creative-writing": "3.1.1",
    "deterministic-qa": "3.1.2",
    "open-generation": "3.1.2",
    "image-text-matching": "3.2.1",
    "efficient-inference": "4.1",
    "high-quality-generation": "4.2",
}


def test_every_guide_scenario_has_a_preset() -> None:
    names = {p.name: p.section for p in list_presets()}
    assert {k: names[k] for k in GUIDE} == GUIDE
    assert "tiny-cpu" in names


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: p.name)
def test_preset_is_valid_normalised_and_cites_the_guide(preset) -> None:  # type: ignore[no-untyped-def]
    result = spec.validate(preset.document)
    assert result.valid, result.errors
    assert result.normalized == preset.document
    if preset.name != "tiny-cpu":
        # The only warning a guide preset may carry: its task is trained as a causal LM.
        assert all(w.field == "task" for w in result.warnings), result.warnings
        assert "Guide" in preset.description and preset.section in preset.description


def test_scenario_values_follow_the_guide() -> None:
    gen = {p.name: p.document["generation"] for p in list_presets()}
    assert 0.3 <= gen["structured-output"]["temperature"] <= 0.5
    assert 0.7 <= gen["creative-writing"]["temperature"] <= 1.0
    assert gen["deterministic-qa"]["top_p"] == 0.9
    assert gen["open-generation"]["top_p"] == 0.95
    assert gen["high-quality-generation"] == {
        **gen["high-quality-generation"],
        "temperature": 0.8,
        "top_p": 0.95,
        "repetition_penalty": 1.2,
    }
    efficient = get_preset("efficient-inference").document
    assert efficient["generation"]["per_device_eval_batch_size"] == 32
    assert efficient["generation"]["temperature"] == 0.3
    assert efficient["generation"]["max_length"] == 512
    assert efficient["resources"]["gpu_memory_gb"] == 8.0
    matching = get_preset("image-text-matching").document
    assert matching["task"] == "multimodal_matching"
    assert matching["multimodal"] == {"visual_encoder_weight": 0.7, "text_encoder_weight": 0.3}
    assert 512 <= get_preset("lightweight-classification").document["model"]["model_dim"] <= 768
    complex_ = get_preset("complex-multimodal").document
    assert 1024 <= complex_["model"]["model_dim"] <= 1536
    assert complex_["resources"]["gpu_memory_gb"] >= 16


def test_tiny_cpu_is_tiny() -> None:
    doc = get_preset("tiny-cpu").document
    assert doc["model"]["architecture"] == "deepseek_v2"
    assert doc["training"]["num_training_steps"] <= 50
    assert spec.validate(doc).estimate["parameters"] < 500_000  # type: ignore[index]


def test_get_preset_unknown_is_not_found() -> None:
    with pytest.raises(NotFound, match="tiny-cpu"):
        get_preset("nope")


def test_returned_documents_are_copies() -> None:
    get_preset("tiny-cpu").document["model"]["model_dim"] = 1
    assert get_preset("tiny-cpu").document["model"]["model_dim"] == 64
