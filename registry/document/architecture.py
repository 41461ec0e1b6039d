"""How a normalised document becomes a transformers model: the one definition.

The estimate counts the parameters of exactly this model and the worker builds it, so every
derived size lives here. Nothing here imports transformers: :mod:`worker.model` builds the
model from these sizes.
"""

from __future__ import annotations

from typing import Any

#: Special token ids shared by both tokenizers.
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
#: byte: 256 byte values after the three specials (byte b has id b + 3).
BYTE_VOCAB_SIZE = 256 + 3
#: bpe: the target size of the byte-level BPE trained on the dataset.
BPE_VOCAB_SIZE = 4096
#: Llama's FeedForward rounds 8/3 x model_dim up to a multiple of this.
FFN_MULTIPLE_OF = 256

# DeepSeek-V2 mixture of experts, sized down for small models (FACTS: num_experts_per_tok
# must be set or forward fails).
N_ROUTED_EXPERTS = 4
NUM_EXPERTS_PER_TOK = 2
N_SHARED_EXPERTS = 1
FIRST_K_DENSE_REPLACE = 1


def resolve_vocab_size(doc: dict[str, Any]) -> int:
    """model.vocab_size, or the tokenizer's size when null (byte 259, bpe 4096)."""
    explicit = doc["model"].get("vocab_size")
    if explicit is not None:
        return int(explicit)
    return BYTE_VOCAB_SIZE if doc["data"]["tokenizer"] == "byte" else BPE_VOCAB_SIZE


def resolve_intermediate_size(doc: dict[str, Any]) -> int:
    """model.intermediate_size, or Llama's rule: int(8/3 x model_dim) rounded up to 256."""
    explicit = doc["model"].get("intermediate_size")
    if explicit is not None:
        return int(explicit)
    hidden = int(8 * doc["model"]["model_dim"] / 3)
    return FFN_MULTIPLE_OF * ((hidden + FFN_MULTIPLE_OF - 1) // FFN_MULTIPLE_OF)


def model_type(doc: dict[str, Any]) -> str:
    """The transformers model type: ``deepseek_v2`` or ``llama``."""
    return str(doc["model"]["architecture"])


def kv_heads(doc: dict[str, Any]) -> int:
    """model.num_key_value_heads, or num_attention_heads when null (no grouped-query attention)."""
    explicit = doc["model"].get("num_key_value_heads")
    return int(explicit) if explicit is not None else int(doc["model"]["num_attention_heads"])


def tied(doc: dict[str, Any]) -> bool:
    """model.tie_word_embeddings (absent = false): lm_head shares the embedding matrix."""
    return bool(doc["model"].get("tie_word_embeddings") or False)


def derived_mla(doc: dict[str, Any]) -> dict[str, int | None]:
    """DeepSeek-V2 latent-attention sizes as derived when model.mla leaves them null.

    Scaled from DeepSeek-V2 itself (head_dim 128: nope 128, rope 64, v 128, kv rank 512):
    nope = v = head_dim, rope = half of it (even, at least 2), kv_lora_rank = 4 x head_dim,
    no query compression. The query head (nope + rope) must be even: DeepSeek-V2's rotary
    embedding views its slice as complex numbers, so an odd head_dim rounds nope up by one.
    """
    head_dim = doc["model"]["model_dim"] // doc["model"]["num_attention_heads"]
    return {
        "q_lora_rank": None,
        "kv_lora_rank": 4 * head_dim,
        "qk_nope_head_dim": head_dim + head_dim % 2,
        "qk_rope_head_dim": max(2, head_dim // 4 * 2),
        "v_head_dim": head_dim,
    }


def mla_dims(doc: dict[str, Any]) -> dict[str, Any]:
    """Every model.mla field resolved: the document's value, else the derived one."""
    given = doc["model"].get("mla") or {}
    return {k: given[k] if given.get(k) is not None else v for k, v in derived_mla(doc).items()}


def derived_moe(doc: dict[str, Any]) -> dict[str, Any]:
    """DeepSeek-V2 mixture-of-experts settings as derived when model.moe leaves them null.

    Sized down for small models: 4 routed experts, 2 per token, 1 shared, each a quarter of
    the dense FFN, the first layer dense, greedy routing without groups (FACTS:
    num_experts_per_tok must be set or forward fails).
    """
    return {
        "n_routed_experts": N_ROUTED_EXPERTS,
        "num_experts_per_tok": NUM_EXPERTS_PER_TOK,
        "n_shared_experts": N_SHARED_EXPERTS,
        "moe_intermediate_size": max(1, resolve_intermediate_size(doc) // 4),
        "first_k_dense_replace": FIRST_K_DENSE_REPLACE,
        "topk_method": "greedy",
        "n_group": None,
        "topk_group": None,
        "routed_scaling_factor": 1.0,
    }


def moe_settings(doc: dict[str, Any]) -> dict[str, Any]:
    """Every model.moe field resolved: the document's value, else the derived one."""
    given = doc["model"].get("moe") or {}
    return {k: given[k] if given.get(k) is not None else v for k, v in derived_moe(doc).items()}


def moe_intermediate_size(doc: dict[str, Any]) -> int:
    """Width of one expert's FFN (model.moe.moe_intermediate_size or a quarter of the dense)."""
    return int(moe_settings(doc)["moe_intermediate_size"])


def transformers_config_kwargs(doc: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``DeepseekV2Config`` or ``LlamaConfig``."""
    model = doc["model"]
    kwargs: dict[str, Any] = {
        "vocab_size": resolve_vocab_size(doc),
        "hidden_size": model["model_dim"],
        "intermediate_size": resolve_intermediate_size(doc),
        "num_hidden_layers": model["num_hidden_layers"],
        "num_attention_heads": model["num_attention_heads"],
        "num_key_value_heads": kv_heads(doc),
        "max_position_embeddings": model["max_position_embeddings"],
        "pad_token_id": PAD_ID,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "tie_word_embeddings": tied(doc),
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
    }
    if model_type(doc) == "deepseek_v2":
        kwargs.update(mla_dims(doc))
        kwargs.update(moe_settings(doc))
        kwargs["norm_topk_prob"] = False
    return kwargs
