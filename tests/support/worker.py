"""A tiny document, a claim as the daemon receives it, and the splits it trains on."""

from __future__ import annotations

from typing import Any

from registry.document.spec import config_hash, normalize

TINY: dict[str, Any] = {
    "model": {
        "architecture": "deepseek_v2",
        "model_dim": 64,
        "num_attention_heads": 8,
        "num_hidden_layers": 2,
        "max_position_embeddings": 128,
    },
    "training": {
        "num_training_steps": 20,
        "per_device_train_batch_size": 4,
        "eval_every_steps": 10,
        "learning_rate": 3e-3,
        "warmup_ratio": 0.1,
    },
    "generation": {"max_length": 64, "per_device_eval_batch_size": 4},
    "data": {"dataset": "builtin:pydoc", "seq_len": 64},
}


def tiny_doc(**sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny normalised document, with `sections` merged over it."""
    raw = {name: dict(fields) for name, fields in TINY.items()}
    for name, fields in sections.items():
        raw.setdefault(name, {}).update(fields)
    return normalize(raw)


def make_job(
    doc: dict[str, Any],
    kind: str = "train",
    run_id: int = 1,
    name: str = "tiny",
    from_run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A claim as the daemon receives it."""
    run = {
        "id": run_id,
        "config": name,
        "version": 1,
        "config_hash": config_hash(doc),
        "kind": kind,
        "attempt": 1,
        "status": "running",
    }
    return {"run": run, "config": doc, "lease": 1, "from_run": from_run}


def splits_of(doc: dict[str, Any]) -> Any:
    """The byte-tokenised train and validation splits of ``doc``'s dataset."""
    from worker import data
    from worker.tokenizer import ByteTokenizer

    raw = data.load_corpus(doc["data"]["dataset"])
    train_raw, val_raw = data.split_bytes(raw, doc["data"]["validation_fraction"])
    tok = ByteTokenizer()
    return data.Splits(tok.encode_corpus(train_raw), tok.encode_corpus(val_raw))


def classification_doc(**sections: dict[str, Any]) -> dict[str, Any]:
    """The guide's lightweight-classification preset (2.1.1) shrunk to train on the CPU in
    seconds: llama, 32 dims, 4 heads, 1 layer, 64 byte tokens of each docstring, 60 steps."""
    raw: dict[str, Any] = {
        "task": "classification",
        "model": {
            "architecture": "llama",
            "model_dim": 32,
            "num_attention_heads": 4,
            "num_hidden_layers": 1,
            "max_position_embeddings": 128,
        },
        "training": {
            "num_training_steps": 60,
            "per_device_train_batch_size": 16,
            "eval_every_steps": 30,
            "learning_rate": 3e-3,
            "warmup_ratio": 0.1,
        },
        "generation": {"max_length": 64, "per_device_eval_batch_size": 32},
        "data": {"dataset": "builtin:stdlib-docs", "seq_len": 64, "validation_fraction": 0.2},
        "multimodal": {"visual_encoder_weight": 0.0},
    }
    for name, fields in sections.items():
        raw.setdefault(name, {}).update(fields)
    return normalize(raw)


def matching_doc(visual: float = 0.7, **sections: dict[str, Any]) -> dict[str, Any]:
    """The guide's image-text-matching preset (3.2.1: visual 0.7, text 0.3) shrunk to train on
    the CPU in seconds: llama, 32 dims, 4 heads, 1 layer (the ViT derived: the same sizes, 8 px
    patches of 32 px images), builtin:shapes, 40 byte tokens a caption, 200 steps of 32 pairs."""
    raw: dict[str, Any] = {
        "task": "multimodal_matching",
        "model": {
            "architecture": "llama",
            "model_dim": 32,
            "num_attention_heads": 4,
            "num_hidden_layers": 1,
            "max_position_embeddings": 64,
        },
        "training": {
            "num_training_steps": 200,
            "per_device_train_batch_size": 32,
            "eval_every_steps": 100,
            "learning_rate": 1e-3,
            "warmup_ratio": 0.05,
        },
        "generation": {"max_length": 64, "per_device_eval_batch_size": 32},
        "data": {"dataset": "builtin:shapes", "seq_len": 40, "validation_fraction": 0.2},
        "multimodal": {
            "visual_encoder_weight": visual,
            "text_encoder_weight": round(1 - visual, 6),
        },
    }
    for name, fields in sections.items():
        raw.setdefault(name, {}).update(fields)
    return normalize(raw)
