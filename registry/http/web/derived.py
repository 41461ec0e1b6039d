"""What each empty architecture field of the config form resolves to (its placeholder).

The values come from :mod:`registry.document.architecture`, the one definition the estimate
and the worker use, so the form shows exactly what an empty field builds. Pure (no Flask).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from registry.document import architecture as arch
from registry.document.spec_model import NESTED, ModelSection

#: What a derived null means, by field.
_NONE = {
    "q_lora_rank": "none: no query compression",
    "n_group": "none: no groups",
    "aux_loss_alpha": "none: no load-balancing loss",
}


def derived_values(doc: Any) -> dict[str, str]:
    """``{dotted path: text}`` for every architecture field the document leaves null.

    Empty when the model section cannot be read (its own errors say why); the MoE and MLA
    fields of a Llama say that they apply to deepseek_v2 only.
    """
    model = _typed_model(doc)
    if model is None:
        return {}
    full = {"model": model, "data": {"tokenizer": "byte"}}
    out: dict[str, str] = {}
    if model.get("num_key_value_heads") is None:
        out["model.num_key_value_heads"] = f"{arch.kv_heads(full)} (one per attention head)"
    deepseek = arch.model_type(full) == "deepseek_v2"
    resolvers = {"moe": arch.derived_moe, "mla": arch.derived_mla}
    for name, cls in NESTED.items():
        given = model.get(name) or {}
        values = resolvers[name](full) if deepseek else {}
        for leaf in cls.model_fields:
            if given.get(leaf) is None:
                out[f"model.{name}.{leaf}"] = (
                    _text(leaf, values.get(leaf)) if deepseek else "unused (deepseek_v2 only)"
                )
    return out


def _text(leaf: str, value: Any) -> str:
    if value is None:
        return _NONE.get(leaf, _NONE["n_group"])
    return str(value)


def _typed_model(doc: Any) -> dict[str, Any] | None:
    """The model section typed, or None when it is not readable with positive sizes."""
    raw = doc.get("model") if isinstance(doc, dict) else None
    if raw is not None and not isinstance(raw, dict):
        return None
    try:
        model = ModelSection.model_validate(raw or {}).model_dump()
    except ValidationError:
        return None
    sizes = (model["model_dim"], model["num_attention_heads"], model["intermediate_size"] or 1)
    return model if min(sizes) > 0 else None
