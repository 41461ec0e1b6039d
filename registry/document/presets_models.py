"""Presets of real models: DeepSeek-V2.5, DeepSeek-V2-Lite and Llama-3-8B as published.

Each ``model`` section is the published ``config.json`` in this document's names (CONTRACT
5.6), so the estimate counts the real model's parameters. The rest follows the guide for a model
this size: bf16, gradient checkpointing (5.1), the learning rate and warmup of 2.2.1, a small
micro-batch with accumulation steps (2.2.2), temperature 0.7 with top_p 0.92 (3.1.2). What each
needs is computed from the estimate when the presets are built (:func:`needs`), not written down.
"""

from __future__ import annotations

from typing import Any

#: The guide's training advice for a large model (the sections named in each description).
_TRAINING = {
    "learning_rate": 3e-5,
    "scheduler": "cosine",
    "warmup_ratio": 0.1,
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 16,
    "gradient_checkpointing": True,
    "precision": "bf16",
}
_GENERATION = {"temperature": 0.7, "top_p": 0.92, "max_length": 512}
_GUIDE = (
    " Guide 5.1 for the memory (gradient checkpointing; model parallelism, here fully sharded "
    "data parallel), 2.2.1 for the learning rate 3e-5 with a 10% linear warmup and cosine decay, "
    "2.2.2 for one sequence per device with 16 accumulation steps, 3.1.2 for temperature 0.7 "
    "with top_p 0.92; bf16 for the activations."
)
_DEEPSEEK_NOTE = (
    " max_position_embeddings is the published 163840, which DeepSeek reaches with YaRN "
    "scaling of a 4096-token RoPE; the worker builds plain RoPE, so train at seq_len 4096 (as "
    "here). vocab_size is the published 102400; the worker's locally trained BPE uses the "
    "first 4096 ids."
)

DEEPSEEK_V25 = {
    "architecture": "deepseek_v2",
    "model_dim": 5120,
    "num_attention_heads": 128,
    "num_hidden_layers": 60,
    "intermediate_size": 12288,
    "max_position_embeddings": 163840,
    "vocab_size": 102400,
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
DEEPSEEK_V2_LITE = {
    "architecture": "deepseek_v2",
    "model_dim": 2048,
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "intermediate_size": 10944,
    "max_position_embeddings": 163840,
    "vocab_size": 102400,
    "moe": {
        "n_routed_experts": 64,
        "num_experts_per_tok": 6,
        "n_shared_experts": 2,
        "moe_intermediate_size": 1408,
        "first_k_dense_replace": 1,
        "topk_method": "greedy",
        "routed_scaling_factor": 1.0,
    },
    "mla": {
        "kv_lora_rank": 512,
        "qk_nope_head_dim": 128,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
    },
}
LLAMA_3_8B = {
    "architecture": "llama",
    "model_dim": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 32,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
}


def _document(model: dict[str, Any], seq_len: int, gpus: int) -> dict[str, Any]:
    return {
        "model": model,
        "training": _TRAINING,
        "generation": _GENERATION,
        "data": {"tokenizer": "bpe", "seq_len": seq_len},
        "resources": {"gpus": gpus, "gpu_memory_gb": 80.0},
    }


# (name, guide section, description, the fields that differ from the defaults)
SOURCES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "deepseek-v2.5",
        "5.1",
        "DeepSeek-V2.5 as published (the model the guide configures; DeepSeek-V2's shape): "
        "5120 dims, 60 layers, 128 heads (far above the guide's 8-32 for small models, so "
        "expect that warning), latent attention with query rank 1536 and key-value rank 512, "
        "160 routed experts of which 6 per token (within 3 of 8 groups, weights x 16) plus 2 "
        "shared, the first layer dense; 128 GPUs of 80 GiB." + _GUIDE + _DEEPSEEK_NOTE,
        _document(DEEPSEEK_V25, 4096, 128),
    ),
    (
        "deepseek-v2-lite",
        "5.1",
        "DeepSeek-V2-Lite as published: 2048 dims, 27 layers, 16 heads, latent attention "
        "without query compression and key-value rank 512, 64 routed experts of which 6 per "
        "token (greedy) plus 2 shared, the first layer dense; 8 GPUs of 80 GiB."
        + _GUIDE
        + _DEEPSEEK_NOTE,
        _document(DEEPSEEK_V2_LITE, 4096, 8),
    ),
    (
        "llama-3-8b",
        "5.1",
        "Llama-3-8B's shape: 4096 dims, 32 layers, 32 heads sharing 8 key/value heads "
        "(grouped-query attention), FFN 14336, vocabulary 128256, untied embeddings, 8192 "
        "positions; 8 GPUs of 80 GiB. (Its RoPE theta of 500000 is not a document field: the "
        "worker keeps transformers' default.)" + _GUIDE,
        _document(LLAMA_3_8B, 8192, 8),
    ),
]


def needs(estimate: dict[str, Any], doc: dict[str, Any]) -> str:
    """What a document needs, in words, from its estimate (appended to the description)."""
    gpus, budget = doc["resources"]["gpus"], doc["resources"]["gpu_memory_gb"]
    active = estimate.get("active_parameters", estimate["parameters"])
    text = f" Needs: {estimate['parameters']:,} parameters ({active:,} active per token)."
    per_device = estimate.get("memory_per_device_gb")
    if not per_device:  # an estimate without the sharded figures
        return text + f" Peak training memory per device: {estimate['peak_memory_gb']:,} GiB."
    dp, fs = per_device["data_parallel"], per_device["fully_sharded"]
    text += (
        f" Training memory per device ({doc['training']['precision']}): data parallel (a full "
        f"copy on each device) {_gib(dp, 'with')} with gradient checkpointing, "
        f"{_gib(dp, 'without')} without; fully sharded over {gpus} devices "
        f"{_gib(fs, 'with')} with, {_gib(fs, 'without')} without."
    )
    fewest = estimate.get("gpus_to_fit_fully_sharded")
    if fewest is not None:
        text += (
            f" Fully sharded with checkpointing it fits {budget:g} GiB devices from {fewest} on."
        )
    return text


def _gib(figures: dict[str, float], checkpointing: str) -> str:
    return f"{figures[checkpointing + '_checkpointing']:,.1f} GiB"
