"""The model a config describes, built with transformers: the one builder the worker runs.

Every size comes from :mod:`registry.document.architecture` (the pure definition the estimate
counts), so the parameter count the registry promises is the one this builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.document.architecture import model_type, transformers_config_kwargs


def build_config(doc: Mapping[str, Any]) -> Any:
    """The transformers config object for a normalised document."""
    import transformers

    classes = {"deepseek_v2": transformers.DeepseekV2Config, "llama": transformers.LlamaConfig}
    return classes[model_type(dict(doc))](**transformers_config_kwargs(dict(doc)))


def build_model(doc: Mapping[str, Any], vocab_size: int | None = None) -> Any:
    """A freshly initialised causal LM for the document (nothing downloaded).

    ``vocab_size`` is the tokenizer's: a model whose vocabulary is smaller is refused.
    """
    from transformers import DeepseekV2ForCausalLM, LlamaForCausalLM

    config = build_config(doc)
    if vocab_size is not None and config.vocab_size < vocab_size:
        raise ValueError(
            f"model.vocab_size {config.vocab_size} is smaller than the tokenizer's "
            f"{vocab_size} tokens: set model.vocab_size >= {vocab_size} or null"
        )
    classes = {"deepseek_v2": DeepseekV2ForCausalLM, "llama": LlamaForCausalLM}
    model = classes[model_type(dict(doc))](config)
    if doc["training"]["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    return model
