"""Scenario presets from the parameter guide, each a complete normalised document.

The presets of real models (DeepSeek-V2.5, DeepSeek-V2-Lite, Llama-3-8B) are defined in
:mod:`registry.document.presets_models` and listed after the guide's scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from registry.document import presets_models
from registry.document.spec import normalize, validate
from registry.errors import NotFound


@dataclass(frozen=True)
class Preset:
    """A named starting point: which section of the guide it follows, and why."""

    name: str
    description: str
    section: str
    document: dict[str, Any] = field(hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "description", "section", "config"}``."""
        return {
            "name": self.name,
            "description": self.description,
            "section": self.section,
            "config": self.document,
        }


# (name, guide section, description, the fields that differ from the defaults)
_SOURCES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "tiny-cpu",
        "-",
        "A tiny DeepSeek-V2 (64 dims, 8 heads, 2 layers, 4 experts) that trains for 30 steps "
        "in seconds on a CPU: for demos and tests. Its learning rate is far above the guide's "
        "1e-5 to 5e-5, which is meant for large models; a model this small learns nothing in "
        "30 steps at 3e-5, so expect that warning.",
        {
            "model": {
                "model_dim": 64,
                "num_attention_heads": 8,
                "num_hidden_layers": 2,
                "max_position_embeddings": 128,
            },
            "training": {
                "learning_rate": 1e-3,
                "num_training_steps": 30,
                "eval_every_steps": 10,
                "per_device_train_batch_size": 8,
            },
            "generation": {"max_length": 48, "per_device_eval_batch_size": 4},
            "data": {"seq_len": 64},
            "resources": {"gpu_memory_gb": 2.0},
        },
    ),
    (
        "lightweight-classification",
        "2.1.1",
        "Guide 2.1.1: light tasks such as text classification take model_dim 512-768, "
        "balancing speed and accuracy; 768 with 12 heads (64 per head, within 8-32), the "
        "guide's batch 16 on a 16GB GPU, bf16 on it (the GPU's fast matrix precision; weights "
        "stay fp32) and a text-only fusion (visual weight 0).",
        {
            "task": "classification",
            "model": {
                "architecture": "llama",
                "model_dim": 768,
                "num_attention_heads": 12,
                "num_hidden_layers": 6,
            },
            "training": {
                "learning_rate": 3e-5,
                "per_device_train_batch_size": 16,
                "precision": "bf16",
            },
            "data": {"dataset": "builtin:stdlib-docs"},
            "resources": {"gpu_memory_gb": 16.0},
        },
    ),
    (
        "complex-multimodal",
        "2.1.1",
        "Guide 2.1.1: complex tasks such as multimodal generation take model_dim 1024-1536 "
        "and need 16GB+ of GPU memory. 1024 dims, 16 heads, 24 layers (the guide's example); "
        "at batch 16 x 512 tokens it would need about 18 GiB in bf16, so gradient "
        "checkpointing (the guide's remedy in 5.1) brings it to about 7 GiB of a 16 GiB GPU; "
        "visual 0.7 / text 0.3 (guide 3.2.1).",
        {
            "task": "multimodal_matching",
            "model": {
                "model_dim": 1024,
                "num_attention_heads": 16,
                "num_hidden_layers": 24,
                "max_position_embeddings": 1024,
            },
            "training": {
                "per_device_train_batch_size": 16,
                "gradient_checkpointing": True,
                "precision": "bf16",
            },
            "multimodal": {"visual_encoder_weight": 0.7, "text_encoder_weight": 0.3},
            "data": {"dataset": "builtin:shapes", "seq_len": 512},
            "resources": {"gpu_memory_gb": 16.0},
        },
    ),
    (
        "structured-output",
        "3.1.1",
        "Guide 3.1.1: structured output such as code wants temperature 0.3-0.5, so the "
        "output stays close to deterministic; 0.4 with top_p 0.9.",
        {"generation": {"temperature": 0.4, "top_p": 0.9}},
    ),
    (
        "creative-writing",
        "3.1.1",
        "Guide 3.1.1: creative writing wants temperature 0.7-1.0 (above 1.2 loses "
        "coherence); 0.9 with the open-generation top_p 0.95 (3.1.2) and a mild "
        "repetition_penalty 1.1 (5.2).",
        {"generation": {"temperature": 0.9, "top_p": 0.95, "repetition_penalty": 1.1}},
    ),
    (
        "deterministic-qa",
        "3.1.2",
        "Guide 3.1.2: deterministic tasks such as question answering take top_p 0.9, "
        "narrowing the candidate tokens; tuned together with a low temperature (0.5).",
        {"generation": {"temperature": 0.5, "top_p": 0.9}},
    ),
    (
        "open-generation",
        "3.1.2",
        "Guide 3.1.2: open-domain generation takes top_p 0.95 for more diversity, with "
        "temperature 0.8.",
        {"generation": {"temperature": 0.8, "top_p": 0.95}},
    ),
    (
        "image-text-matching",
        "3.2.1",
        "Guide 3.2.1: image-text matching weights the visual encoder 0.6-0.8; the guide's "
        "example uses visual 0.7 and text 0.3.",
        {
            "task": "multimodal_matching",
            "multimodal": {"visual_encoder_weight": 0.7, "text_encoder_weight": 0.3},
            "data": {"dataset": "builtin:shapes"},
        },
    ),
    (
        "efficient-inference",
        "4.1",
        "Guide 4.1, efficient inference: per_device_eval_batch_size 32, temperature 0.3, "
        "max_length 512; one GPU with 8GB suffices, scoring and sampling in bf16.",
        {
            "training": {"precision": "bf16"},
            "generation": {"per_device_eval_batch_size": 32, "temperature": 0.3, "max_length": 512},
            "resources": {"gpus": 1, "gpu_memory_gb": 8.0},
        },
    ),
    (
        "high-quality-generation",
        "4.2",
        "Guide 4.2, high-quality generation: temperature 0.8, top_p 0.95 and "
        "repetition_penalty 1.2 to reduce repetition; about 30% slower generation for "
        "clearly more diverse text.",
        {"generation": {"temperature": 0.8, "top_p": 0.95, "repetition_penalty": 1.2}},
    ),
]


@cache
def _presets() -> dict[str, Preset]:
    out = {
        name: Preset(name, description, section, normalize(partial))
        for name, section, description, partial in _SOURCES
    }
    for name, section, description, partial in presets_models.SOURCES:
        doc = normalize(partial)
        needs = presets_models.needs(validate(doc).estimate or {}, doc)
        out[name] = Preset(name, description + needs, section, doc)
    return out


def list_presets() -> list[Preset]:
    """Every preset, in the guide's order (tiny-cpu first), then the real models."""
    return [_copy(p) for p in _presets().values()]


def get_preset(name: str) -> Preset:
    """One preset by name, or NotFound."""
    try:
        return _copy(_presets()[name])
    except KeyError:
        known = ", ".join(_presets())
        raise NotFound(f"no preset named {name!r}; known: {known}") from None


def _copy(preset: Preset) -> Preset:
    # Callers may edit the document they get; the cached one stays as defined.
    import copy

    return Preset(preset.name, preset.description, preset.section, copy.deepcopy(preset.document))
