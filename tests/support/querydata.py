"""A varied set of configs, versions and runs, indexed, for the query tests."""

from __future__ import annotations

import copy
import datetime as dt
import random
from typing import Any

from sqlalchemy.orm import Session

from registry.models import Config, ConfigVersion, Run
from registry.services.indexing import index_finished_run, index_version

BASE_DOC: dict[str, Any] = {
    "schema_version": 1,
    "task": "causal_lm",
    "model": {
        "architecture": "deepseek_v2",
        "model_dim": 256,
        "num_attention_heads": 8,
        "num_hidden_layers": 4,
        "intermediate_size": None,
        "max_position_embeddings": 512,
        "vocab_size": None,
    },
    "training": {
        "learning_rate": 3e-5,
        "scheduler": "linear",
        "warmup_ratio": 0.1,
        "num_training_steps": 1000,
        "per_device_train_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "gradient_checkpointing": False,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "precision": "fp32",
        "seed": 42,
        "eval_every_steps": 100,
    },
    "generation": {
        "temperature": 0.7,
        "top_p": 0.92,
        "repetition_penalty": 1.0,
        "max_length": 512,
        "per_device_eval_batch_size": 32,
    },
    "multimodal": {"visual_encoder_weight": 0.0, "text_encoder_weight": 1.0},
    "data": {
        "dataset": "builtin:tiny_shakespeare",
        "tokenizer": "byte",
        "seq_len": 128,
        "validation_fraction": 0.1,
    },
    "resources": {"gpus": 1, "gpu_memory_gb": 16},
}

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
METRICS = ["val_loss", "train_loss", "val_accuracy", "tokens_per_second"]


def _doc(i: int) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_DOC)
    doc["training"]["learning_rate"] = [1e-5, 3e-5, 4e-5, 5e-5][i % 4]
    doc["training"]["gradient_checkpointing"] = i % 3 == 0
    doc["training"]["scheduler"] = ["linear", "cosine", "constant"][i % 3]
    doc["model"]["model_dim"] = [128, 256, 512][i % 3]
    doc["model"]["vocab_size"] = None if i % 2 else 512
    doc["data"]["dataset"] = [
        "builtin:tiny_shakespeare",
        "builtin:pydoc",
        "file:/d/x%.txt",
        "Builtin:Caps",
    ][i % 4]
    if i == 5:
        del doc["multimodal"]  # an older document lacking a section
    return doc


def make_runs(session: Session, n_runs: int = 48) -> None:
    """Configs, versions and runs with varied configs and metrics, indexed."""
    rng = random.Random(4)
    versions = []
    for c, name in enumerate(["tiny", "tiny_moe", "base", "wide-1"]):
        config = Config(name=name)
        session.add(config)
        for v in range(1, 4):
            i = c * 3 + v
            version = ConfigVersion(config=config, version=v, hash=f"{i:064x}", document=_doc(i))
            session.add(version)
            versions.append(version)
    session.flush()
    for version in versions:
        index_version(session, version)
    runs: list[Run] = []
    for i in range(n_runs):
        status = rng.choice(["queued", "running", "succeeded", "succeeded", "failed", "cancelled"])
        run = Run(
            config_version_id=rng.choice(versions).id,
            kind=rng.choice(["train", "evaluate"]),
            status=status,
            queue=rng.choice(["default", "gpu"]),
            attempt=rng.randint(1, 3),
            seed=rng.choice([1, 42]),
            worker_id=rng.choice([None, "w1", "w2"]),
            created_at=T0 + dt.timedelta(hours=i // 2),  # ties on created_at
            provenance={"seed": 1} if i % 4 else full_provenance(),
        )
        if status in ("succeeded", "failed"):
            run.metrics = {m: round(rng.uniform(1, 3), 1) for m in METRICS if rng.random() < 0.8}
            if i % 7 == 0:
                run.metrics["val_loss"] = "n/a"  # not a number: not indexed, compares as lacking
        finished = [r for r in runs if r.status == "succeeded"]
        if finished and i % 5 == 0:
            original = rng.choice(finished)
            run.reproduces, run.config_version_id = original.id, original.config_version_id
            if i % 10 == 0 and original.metrics and run.metrics is not None:
                run.metrics = dict(original.metrics, tokens_per_second=9.0)
                run.provenance = dict(original.provenance or {})  # the same environment
        session.add(run)
        session.flush()
        runs.append(run)
        if status in ("succeeded", "failed", "cancelled"):
            index_finished_run(session, run)
    session.commit()


def full_provenance() -> dict[str, Any]:
    keys = [
        "seed",
        "config_hash",
        "python",
        "torch",
        "transformers",
        "mlflow",
        "device",
        "dataset_sha256",
        "code_version",
    ]
    return {k: "x" for k in keys}
