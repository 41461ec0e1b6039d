"""The model a config describes, built with transformers: the one builder the worker runs.

Every size comes from :mod:`registry.document.architecture` (the pure definition the estimate
counts), so the parameter count the registry promises is the one this builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.document.architecture import kv_heads, model_type, transformers_config_kwargs


def build_config(doc: Mapping[str, Any]) -> Any:
    """The transformers config object for a normalised document.

    Every field of the document's model section reaches the config (through
    ``transformers_config_kwargs``): num_key_value_heads, tie_word_embeddings, and for
    deepseek_v2 each resolved model.moe and model.mla size. DeepSeek-V2's latent attention
    expands its key-value latent to every head, so there key-value heads other than the
    attention heads cannot be built (its forward fails) and are refused here.
    """
    import transformers

    plain = dict(doc)
    heads = plain["model"]["num_attention_heads"]
    if model_type(plain) == "deepseek_v2" and kv_heads(plain) != heads:
        raise ValueError(
            f"model.num_key_value_heads {kv_heads(plain)}: deepseek_v2 gives every one of its "
            f"{heads} heads its own keys and values; set it to null or {heads}"
        )
    classes = {"deepseek_v2": transformers.DeepseekV2Config, "llama": transformers.LlamaConfig}
    return classes[model_type(plain)](**transformers_config_kwargs(plain))


def build_model(doc: Mapping[str, Any], vocab_size: int | None = None) -> Any:
    """A freshly initialised causal LM for the document (nothing downloaded).

    ``vocab_size`` is the tokenizer's: a model whose vocabulary is smaller is refused.
    DeepSeek-V2's routed experts run in the autocast dtype (:mod:`worker.moe`); gradient
    checkpointing is the non-reentrant kind, asked for explicitly (transformers' default for
    ``use_reentrant`` has changed between releases).
    """
    from transformers import DeepseekV2ForCausalLM, LlamaForCausalLM

    classes = {"deepseek_v2": DeepseekV2ForCausalLM, "llama": LlamaForCausalLM}
    config = checked_config(doc, vocab_size)
    return ready(classes[model_type(dict(doc))](config), doc)


def build_classifier(doc: Mapping[str, Any], vocab_size: int | None, num_labels: int) -> Any:
    """A freshly initialised sequence classifier (``task: classification``) for the document.

    The same backbone as :func:`build_model` with transformers' ``...ForSequenceClassification``
    head: lm_head is replaced by ``score`` (``num_labels x model_dim``, no bias), read at the
    last token that is not ``pad_token_id`` (0) of each row.
    """
    from transformers import DeepseekV2ForSequenceClassification, LlamaForSequenceClassification

    classes = {
        "deepseek_v2": DeepseekV2ForSequenceClassification,
        "llama": LlamaForSequenceClassification,
    }
    config = checked_config(doc, vocab_size)
    config.num_labels = num_labels
    config.problem_type = "single_label_classification"
    return ready(classes[model_type(dict(doc))](config), doc)


def checked_config(doc: Mapping[str, Any], vocab_size: int | None) -> Any:
    config = build_config(doc)
    if vocab_size is not None and config.vocab_size < vocab_size:
        raise ValueError(
            f"model.vocab_size {config.vocab_size} is smaller than the tokenizer's "
            f"{vocab_size} tokens: set model.vocab_size >= {vocab_size} or null"
        )
    return config


def ready(model: Any, doc: Mapping[str, Any]) -> Any:
    """Experts in the autocast dtype; non-reentrant gradient checkpointing if asked for."""
    from worker.moe import use_autocast_experts

    use_autocast_experts(model)
    if doc["training"]["gradient_checkpointing"]:
        reentrant = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=reentrant)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=reentrant)
    return model


def prepare_loaded(loaded: Any, doc: Mapping[str, Any], device: str) -> Any:
    """A model loaded from a checkpoint, made ready as a built one is: experts in the autocast
    dtype, the document's TF32 setting on CUDA; moved to `device`."""
    from worker import precision
    from worker.moe import use_autocast_experts

    use_autocast_experts(loaded)
    precision.configure_tf32(device, precision.tf32_wanted(doc))
    return loaded.to(device)
