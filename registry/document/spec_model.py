"""The ``model`` section: the transformer's shape, with DeepSeek-V2's MoE and MLA as objects.

The fields of CONTRACT 5.6 (``num_key_value_heads``, ``tie_word_embeddings``, ``moe``, ``mla``)
carry the names of the models' own ``config.json``. Each is optional and null (or false, or an
object of nulls) means "derived as before": :func:`drop_unset` leaves such values out of the
normalised document, so every document that does not use them keeps its hash (CONTRACT 5.4).
What a null resolves to lives in :mod:`registry.document.architecture`.
"""

from __future__ import annotations

from typing import Any, Literal

from registry.document.spec_types import (
    ADDED_DECEMBER_2026,
    Bool,
    Float,
    Int,
    Section,
)
from registry.document.spec_types import spec_field as _f

_ADDED = {"x-added": ADDED_DECEMBER_2026}
_DEEPSEEK = "deepseek_v2 only; null derives it"


class MoeSettings(Section):
    """DeepSeek-V2's mixture of experts (deepseek_v2 only); null fields are derived."""

    n_routed_experts: Int | None = _f(
        None,
        f"Routed experts in each MoE layer ({_DEEPSEEK}: 4).",
        "DeepSeek-V2/V2.5: 160; V2-Lite: 64",
        exclusiveMinimum=0,
        **_ADDED,
    )
    num_experts_per_tok: Int | None = _f(
        None,
        f"Routed experts each token passes through, at most n_routed_experts ({_DEEPSEEK}: 2).",
        "DeepSeek-V2/V2.5 and V2-Lite: 6; at most half the routed experts",
        exclusiveMinimum=0,
        **_ADDED,
    )
    n_shared_experts: Int | None = _f(
        None,
        f"Experts every token passes through, besides the routed ones ({_DEEPSEEK}: 1); "
        "0 builds none.",
        "DeepSeek-V2/V2.5 and V2-Lite: 2",
        minimum=0,
        **_ADDED,
    )
    moe_intermediate_size: Int | None = _f(
        None,
        f"Feed-forward width of one expert ({_DEEPSEEK}: intermediate_size // 4).",
        "DeepSeek-V2/V2.5: 1536; V2-Lite: 1408 (about 1/8 of the dense FFN)",
        exclusiveMinimum=0,
        **_ADDED,
    )
    first_k_dense_replace: Int | None = _f(
        None,
        f"The first this many layers keep a dense FFN instead of experts ({_DEEPSEEK}: 1).",
        "1 (DeepSeek-V2/V2.5 and V2-Lite)",
        minimum=0,
        **_ADDED,
    )
    topk_method: Literal["greedy", "group_limited_greedy"] | None = _f(
        None,
        "How the router picks experts: greedy (the top experts overall) or "
        "group_limited_greedy (the top experts within the topk_group best of n_group groups); "
        f"{_DEEPSEEK}: greedy.",
        "group_limited_greedy for many experts spread over devices (DeepSeek-V2/V2.5); "
        "greedy for V2-Lite",
        **_ADDED,
    )
    n_group: Int | None = _f(
        None,
        "Groups the routed experts are split into (group_limited_greedy only); must divide "
        "n_routed_experts.",
        "8 (DeepSeek-V2/V2.5: one group per device)",
        exclusiveMinimum=0,
        **_ADDED,
    )
    topk_group: Int | None = _f(
        None,
        "Groups a token's experts may come from (group_limited_greedy only), at most n_group.",
        "3 (DeepSeek-V2/V2.5)",
        exclusiveMinimum=0,
        **_ADDED,
    )
    routed_scaling_factor: Float | None = _f(
        None,
        f"Factor on the routed experts' weights ({_DEEPSEEK}: 1.0).",
        "DeepSeek-V2/V2.5: 16.0; V2-Lite: 1.0",
        exclusiveMinimum=0,
        **_ADDED,
    )
    aux_loss_alpha: Float | None = _f(
        None,
        "Weight alpha_1 of DeepSeek-V2's expert-level load-balancing loss, "
        "alpha_1 * sum_i f_i * P_i added to the training loss (f_i: the share of tokens "
        "routed to expert i, scaled by experts / experts per token; P_i: its mean router "
        "probability); null: no balance loss (deepseek_v2 only).",
        "0.003 (DeepSeek-V2); null to train without one",
        minimum=0,
        **_ADDED,
    )


class MlaSettings(Section):
    """DeepSeek-V2's multi-head latent attention (deepseek_v2 only); null fields are derived."""

    q_lora_rank: Int | None = _f(
        None,
        "Rank the query is compressed to; null: no query compression.",
        "DeepSeek-V2/V2.5: 1536; V2-Lite: null; below model_dim",
        exclusiveMinimum=0,
        **_ADDED,
    )
    kv_lora_rank: Int | None = _f(
        None,
        "Rank of the compressed key-value latent, the only per-token cache "
        f"({_DEEPSEEK}: 4 x head_dim).",
        "512 (DeepSeek-V2/V2.5 and V2-Lite); below model_dim",
        exclusiveMinimum=0,
        **_ADDED,
    )
    qk_nope_head_dim: Int | None = _f(
        None,
        f"Per-head query/key width without rotary position encoding; even ({_DEEPSEEK}: head_dim).",
        "128 (DeepSeek-V2/V2.5 and V2-Lite)",
        exclusiveMinimum=0,
        **_ADDED,
    )
    qk_rope_head_dim: Int | None = _f(
        None,
        "Per-head query/key width with rotary position encoding; even "
        f"({_DEEPSEEK}: half of head_dim).",
        "64 (DeepSeek-V2/V2.5 and V2-Lite)",
        exclusiveMinimum=0,
        **_ADDED,
    )
    v_head_dim: Int | None = _f(
        None,
        f"Per-head value width ({_DEEPSEEK}: head_dim).",
        "128 (DeepSeek-V2/V2.5 and V2-Lite)",
        exclusiveMinimum=0,
        **_ADDED,
    )


class ModelSection(Section):
    """The transformer architecture (a transformers model type)."""

    architecture: Literal["deepseek_v2", "llama"] = _f(
        "deepseek_v2", "The transformers model type: DeepSeek-V2 (MLA attention, MoE) or Llama."
    )
    model_dim: Int = _f(
        256,
        "Hidden size: the vector dimension of each token; drives model capacity.",
        "512-768 for light tasks (e.g. classification); 1024-1536 for complex ones "
        "(e.g. multimodal), which need 16GB+ of GPU memory",
        exclusiveMinimum=0,
    )
    num_attention_heads: Int = _f(
        8,
        "Parallel attention heads; model_dim must be divisible by it.",
        "8-32",
        exclusiveMinimum=0,
    )
    num_hidden_layers: Int = _f(4, "Transformer blocks.", exclusiveMinimum=0)
    intermediate_size: Int | None = _f(
        None,
        "Feed-forward width; null derives it from model_dim (Llama's rule: 8/3 x "
        "model_dim rounded up to a multiple of 256).",
        exclusiveMinimum=0,
    )
    max_position_embeddings: Int = _f(
        512,
        "Longest sequence the position encoding is set up for; >= data.seq_len.",
        exclusiveMinimum=0,
    )
    vocab_size: Int | None = _f(
        None,
        "Vocabulary size; null takes the tokenizer's (byte: 259, bpe: 4096).",
        minimum=259,
    )
    num_key_value_heads: Int | None = _f(
        None,
        "Key/value heads (grouped-query attention; llama): num_attention_heads must be "
        "divisible by it; null: one per attention head. deepseek_v2's latent attention "
        "gives every head its own keys and values, so there it must be null or the heads.",
        "Llama-3-8B: 8 of 32 heads",
        exclusiveMinimum=0,
        **_ADDED,
    )
    tie_word_embeddings: Bool = _f(
        False,
        "The output layer (lm_head) shares the input embedding matrix: vocab x model_dim "
        "fewer parameters.",
        "false for the published DeepSeek-V2 and Llama-3-8B; true saves memory on small models",
        **_ADDED,
    )
    moe: MoeSettings | None = _f(
        None, "DeepSeek-V2's mixture of experts (deepseek_v2 only); null: derived.", **_ADDED
    )
    mla: MlaSettings | None = _f(
        None,
        "DeepSeek-V2's multi-head latent attention (deepseek_v2 only); null: derived.",
        **_ADDED,
    )


#: The objects nested in the model section, by field name.
NESTED: dict[str, type[Section]] = {"moe": MoeSettings, "mla": MlaSettings}
#: The model fields of CONTRACT 5.6, by dotted path (each left out when unset).
LATER_MODEL_FIELDS: tuple[str, ...] = (
    "model.num_key_value_heads",
    "model.tie_word_embeddings",
    *(f"model.{name}.{leaf}" for name, cls in NESTED.items() for leaf in cls.model_fields),
)


def drop_unset(model: dict[str, Any]) -> dict[str, Any]:
    """The model section without the 5.6 fields that say "derived": null, false, all-null."""
    out = dict(model)
    for name in NESTED:
        inner = {k: v for k, v in (out.get(name) or {}).items() if v is not None}
        if inner:
            out[name] = inner
        else:
            out.pop(name, None)
    if out.get("num_key_value_heads", 0) is None:
        del out["num_key_value_heads"]
    if out.get("tie_word_embeddings") is False:
        del out["tie_word_embeddings"]
    return out
