"""The published models' shapes as documents, and a builder that counts on the meta device.

Each shape is the model section of a document with the model's own ``config.json`` values
(DeepSeek-V2 and V2-Lite from deepseek-ai's repositories, Llama-3-8B and Llama-2-7B from
meta-llama's), with the total ``sum(p.numel())`` transformers gives for it.
"""

from __future__ import annotations

import copy
from typing import Any

from registry.document.spec import normalize

DEEPSEEK_V2: dict[str, Any] = {  # DeepSeek-V2 and V2.5 share the architecture
    "architecture": "deepseek_v2",
    "model_dim": 5120,
    "num_attention_heads": 128,
    "num_hidden_layers": 60,
    "intermediate_size": 12288,
    "vocab_size": 102400,
    "max_position_embeddings": 163840,
    "moe": {
        "n_routed_experts": 160,
        "num_experts_per_tok": 6,
        "n_shared_experts": 2,
        "moe_intermediate_size": 1536,
        "first_k_dense_replace": 1,
        "topk_method": "group_limited_greedy",
        "n_group": 8,
        "topk_group": 3,
        "routed_scaling_factor": 16.0,
    },
    "mla": {
        "q_lora_rank": 1536,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
    },
}
DEEPSEEK_V2_LITE: dict[str, Any] = {
    "architecture": "deepseek_v2",
    "model_dim": 2048,
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "intermediate_size": 10944,
    "vocab_size": 102400,
    "max_position_embeddings": 163840,
    "moe": {
        "n_routed_experts": 64,
        "num_experts_per_tok": 6,
        "n_shared_experts": 2,
        "moe_intermediate_size": 1408,
        "first_k_dense_replace": 1,
        "topk_method": "greedy",
        "n_group": 1,
        "topk_group": 1,
        "routed_scaling_factor": 1.0,
    },
    "mla": {
        "q_lora_rank": None,
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
    },
}
LLAMA_3_8B: dict[str, Any] = {
    "architecture": "llama",
    "model_dim": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 32,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
}
LLAMA_2_7B: dict[str, Any] = {
    "architecture": "llama",
    "model_dim": 4096,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "intermediate_size": 11008,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
#: name: (model section, the real total, the paper's activated parameters per token)
REAL_MODELS: dict[str, tuple[dict[str, Any], int, float]] = {
    "deepseek-v2": (DEEPSEEK_V2, 235_741_434_880, 21e9),
    "deepseek-v2-lite": (DEEPSEEK_V2_LITE, 15_706_484_224, 2.4e9),
    "llama-3-8b": (LLAMA_3_8B, 8_030_261_248, 8_030_261_248),
    "llama-2-7b": (LLAMA_2_7B, 6_738_415_616, 6_738_415_616),
}
#: The fields of CONTRACT 5.6, set on the normalised document directly by :func:`shaped`.
ARCHITECTURE_FIELDS = ("num_key_value_heads", "tie_word_embeddings", "moe", "mla")


def shaped(model: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """A normalised document with this model section (the 5.6 fields set on it as given)."""
    base = {k: v for k, v in model.items() if k not in ARCHITECTURE_FIELDS}
    doc = normalize({"model": base, **sections})
    doc["model"].update(copy.deepcopy({k: model[k] for k in ARCHITECTURE_FIELDS if k in model}))
    return doc


def meta_parameter_count(doc: dict[str, Any]) -> int:
    """``sum(p.numel())`` of the transformers model built for doc on the meta device."""
    import torch
    from transformers import DeepseekV2ForCausalLM, LlamaForCausalLM

    from worker.model import build_config

    classes = {"deepseek_v2": DeepseekV2ForCausalLM, "llama": LlamaForCausalLM}
    with torch.device("meta"):
        model = classes[doc["model"]["architecture"]](build_config(doc))
    return sum(p.numel() for p in model.parameters())
