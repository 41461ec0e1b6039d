"""Fine-tuning (CONTRACT 5.3): a train run with ``from_run`` starts from that run's weights.

The parent must be a succeeded train run (400 naming ``from_run``, as for ``evaluate``), and
the new version's ``model`` section must build weights of the same shapes: the same
:func:`weight_shapes`, else 422 naming ``model`` with each difference. What has no weights may
differ: ``max_position_embeddings`` (rotary positions are computed, not learned), and the
routing of the experts (``num_experts_per_tok``, ``topk_method``, ``n_group``,
``topk_group``, ``routed_scaling_factor``). The vocabulary is bound to the weights, so
``data.tokenizer`` must match too (422 naming it): the worker encodes the fine-tune's data
with the parent's own tokenizer, the one stored beside its weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from registry.document.architecture import model_type, transformers_config_kwargs
from registry.document.visual import has_visual_encoder, visual_sizes
from registry.errors import BadRequest, InvalidInput
from registry.models import Run

#: The transformers config keys that decide the shape of some weight.
WEIGHT_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    # deepseek_v2: latent attention and the experts' count and width
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "n_routed_experts",
    "n_shared_experts",
    "moe_intermediate_size",
    "first_k_dense_replace",
)


def weight_shapes(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What decides the weights' shapes: the architecture and :data:`WEIGHT_KEYS`, resolved."""
    plain = dict(doc)
    kwargs = transformers_config_kwargs(plain)
    shapes = {"architecture": model_type(plain)}
    return shapes | {k: kwargs[k] for k in WEIGHT_KEYS if k in kwargs}


def check_parent(session: Session, from_run: int) -> Run:
    """The succeeded train run ``from_run``; BadRequest naming ``from_run`` otherwise."""
    parent = session.get(Run, from_run)
    if parent is None:
        raise BadRequest(f"from_run {from_run} does not exist", field="from_run")
    if parent.kind != "train" or parent.status != "succeeded":
        raise BadRequest(
            f"from_run {from_run} is a {parent.status} {parent.kind} run; "
            "fine-tuning needs a succeeded train run",
            field="from_run",
        )
    return parent


def check_finetune(session: Session, document: Mapping[str, Any], from_run: int) -> None:
    """Refuse a fine-tune of ``document`` from ``from_run`` that could not load its weights."""
    parent = check_parent(session, from_run)
    theirs = parent.version.document
    errors = differences(theirs, document)
    if errors:
        raise InvalidInput(
            errors,
            f"from_run {from_run}'s weights do not fit this config: "
            + "; ".join(e["message"] for e in errors),
        )


#: The document field behind each ViT size (its MLP width follows the hidden size).
VIT_FIELDS = {
    "hidden_size": "visual_hidden_size",
    "num_hidden_layers": "visual_num_hidden_layers",
    "num_attention_heads": "visual_num_attention_heads",
    "image_size": "image_size",
    "patch_size": "patch_size",
}
#: What each task may be fine-tuned from: its own task, or a causal LM's trained backbone.
STARTS_FROM = {
    "causal_lm": ("causal_lm",),
    "classification": ("classification", "causal_lm"),
    "multimodal_matching": ("multimodal_matching", "causal_lm"),
}


def task_differences(
    parent: Mapping[str, Any], child: Mapping[str, Any], allowed: tuple[str, ...]
) -> list[dict[str, str]]:
    """``task`` (and a matching model's visual encoder) errors of reading parent's weights."""
    mine, theirs = child.get("task", "causal_lm"), parent.get("task", "causal_lm")
    if theirs not in allowed:
        message = f"task is {mine}; from_run is a {theirs} run (needs {' or '.join(allowed)})"
        return [{"field": "task", "message": message}]
    if mine != "multimodal_matching" or theirs != mine:
        return []
    seeing, saw = has_visual_encoder(dict(child)), has_visual_encoder(dict(parent))
    if seeing != saw:
        weight = child["multimodal"]["visual_encoder_weight"]
        message = (
            f"{weight} builds {'a' if seeing else 'no'} visual encoder; from_run's model has "
            f"{'none' if seeing else 'one'}"
        )
        return [{"field": "multimodal.visual_encoder_weight", "message": message}]
    ours, parents = visual_sizes(dict(child)), visual_sizes(dict(parent))
    return [
        {"field": f"multimodal.{VIT_FIELDS[key]}", "message": f"{ours[key]}; from_run has {value}"}
        for key, value in parents.items()
        if seeing and ours[key] != value and key in VIT_FIELDS
    ]


def differences(parent: Mapping[str, Any], child: Mapping[str, Any]) -> list[dict[str, str]]:
    """The 422 errors (``task``, ``model``, ``data.tokenizer``, a matching model's
    ``multimodal`` sizes) of fine-tuning ``child`` from ``parent``."""
    allowed = STARTS_FROM.get(child.get("task", "causal_lm"), ())
    task_errors = task_differences(parent, child, allowed)
    if task_errors and task_errors[0]["field"] == "task":
        return task_errors
    try:
        mine, theirs = weight_shapes(child), weight_shapes(parent)
    except (KeyError, TypeError, ValueError) as exc:
        return [{"field": "model", "message": f"cannot compare the model sections ({exc!r})"}]
    errors = [
        {"field": "model", "message": f"{key} is {mine.get(key)!r}; from_run has {value!r}"}
        for key, value in theirs.items()
        if mine.get(key) != value
    ]
    ours, parents = child["data"].get("tokenizer"), parent["data"].get("tokenizer")
    if ours != parents:
        message = f"tokenizer is {ours!r}; from_run's weights read {parents!r} token ids"
        errors.append({"field": "data.tokenizer", "message": message})
    return task_errors + errors
