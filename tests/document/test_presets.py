"""Presets: one per scenario of the guide, each valid and stored normalised."""

from __future__ import annotations

import pytest

from registry.document import spec
from registry.document.presets import get_preset, list_presets
from registry.errors import NotFound
from tests.support.architectures import REAL_MODELS

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


#: The real models: (published total parameters, the active share per token of the papers).
REAL = {
    "deepseek-v2.5": (235_741_434_880, 21e9),
    "deepseek-v2-lite": (15_706_484_224, 2.4e9),
    "llama-3-8b": (8_030_261_248, 8.03e9),
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
    if preset.name in REAL:
        # The published shapes exceed the guide's small-model ranges and one device.
        allowed = {"resources.gpu_memory_gb", "model.num_attention_heads"}
        assert {w.field for w in result.warnings} <= allowed, result.warnings
        assert "Guide" in preset.description and preset.section in preset.description
    elif preset.name != "tiny-cpu":
        # A guide preset follows its own guide: no warning at all.
        assert not result.warnings, result.warnings
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


@pytest.mark.parametrize("name", REAL)
def test_real_model_presets_are_the_published_models(name: str) -> None:
    preset = get_preset(name)
    doc, (total, active) = preset.document, REAL[name]
    estimate = spec.validate(doc).estimate
    assert estimate is not None
    assert estimate["parameters"] == total  # transformers' numel of the published config
    assert abs(estimate["active_parameters"] - active) / active < 0.15
    training = doc["training"]
    assert training["precision"] == "bf16" and training["gradient_checkpointing"] is True
    assert 1e-5 <= training["learning_rate"] <= 5e-5 and training["warmup_ratio"] == 0.1
    assert (doc["generation"]["temperature"], doc["generation"]["top_p"]) == (0.7, 0.92)
    assert doc["data"]["seq_len"] <= doc["model"]["max_position_embeddings"]
    # what it needs, computed from the estimate: devices and memory per device both ways
    needs = preset.description
    assert f"{total:,} parameters" in needs
    assert f"fully sharded over {doc['resources']['gpus']} devices" in needs
    assert "data parallel" in needs and "without" in needs


@pytest.mark.parametrize(
    ("preset", "published"),
    [
        ("deepseek-v2.5", "deepseek-v2"),
        ("deepseek-v2-lite", "deepseek-v2-lite"),
        ("llama-3-8b", "llama-3-8b"),
    ],
)
def test_real_model_shapes(preset: str, published: str) -> None:
    """Each real-model preset is the published architecture (tests/support/architectures.py)."""
    model = get_preset(preset).document["model"]
    for key, value in REAL_MODELS[published][0].items():
        given = value
        if isinstance(value, dict):  # null fields are left out; greedy routing ignores groups,
            ignored = ("n_group", "topk_group") if value.get("topk_method") == "greedy" else ()
            given = {k: v for k, v in value.items() if v is not None and k not in ignored}
        assert model.get(key) == given, key
    assert "tie_word_embeddings" not in model  # false: untied, left out of the hash


@pytest.mark.parametrize("name", REAL)
def test_what_a_real_model_needs_is_the_estimate(name: str) -> None:
    preset = get_preset(name)
    estimate = spec.validate(preset.document).estimate
    assert estimate is not None
    per_device = estimate["memory_per_device_gb"]
    for mode in ("data_parallel", "fully_sharded"):
        for ckpt in ("with_checkpointing", "without_checkpointing"):
            assert f"{per_device[mode][ckpt]:,.1f} GiB" in preset.description, (mode, ckpt)
    fewest = estimate["gpus_to_fit_fully_sharded"]
    assert f"from {fewest} on" in preset.description
