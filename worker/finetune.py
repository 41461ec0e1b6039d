"""Fine-tuning (CONTRACT 5.3): a train run with ``from_run`` starts from that run's weights.

The parent's weights are read exactly as an ``evaluate`` run reads them: its MLflow
``checkpoint`` artifact (the final weights, the tokenizer and the registry config), loaded
with ``from_pretrained``. The fine-tune's model is built from its own document as every train
run's is (its dropout, gradient checkpointing, experts' kernel), then the parent's weights are
copied in with ``load_state_dict(strict=True)``: the registry already refused a ``model``
section that builds other shapes, and a mismatch left by anything else fails loudly here.

The fine-tune encodes its data with the parent's tokenizer (the token ids the weights were
trained on) and stores that tokenizer in its own checkpoint. Only the weights come from the
parent: the optimiser, learning-rate schedule (warm-up included), gradient scaler and data
order start fresh, from this run's config and seed.

When an attempt resumes (an earlier attempt of the fine-tune left a checkpoint), the
checkpoint wins: it already holds fine-tuned weights and the optimiser state, so the parent's
weights are not copied in (the tokenizer still comes from the parent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.tokenizer import Tokenizer, load_tokenizer
from worker.tracking import Tracker

#: Where the parent's checkpoint is downloaded, under the run's work directory.
FOLDER = "from_run"


@dataclass
class Parent:
    """A downloaded parent checkpoint: where it is, its tokenizer, and what provenance says."""

    folder: Path
    tokenizer: Tokenizer
    provenance: dict[str, Any]


def parent_of(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The claim's ``from_run`` for a train run (a fine-tune), else None."""
    if job["run"]["kind"] != "train":
        return None
    return job.get("from_run") or None


def download(tracker: Tracker, from_run: Mapping[str, Any], workdir: Path) -> Parent:
    """Fetch ``from_run``'s checkpoint artifact; its tokenizer and provenance keys."""
    mlflow_run_id = from_run.get("mlflow_run_id")
    if not mlflow_run_id:
        raise ValueError(f"from_run {from_run.get('id')} has no mlflow_run_id to load weights of")
    folder = tracker.load_checkpoint(str(mlflow_run_id), workdir / FOLDER)
    provenance = {
        "from_run": from_run.get("id"),
        "from_mlflow_run_id": str(mlflow_run_id),
        "from_weights_sha256": weights_sha256(folder),
    }
    return Parent(folder, load_tokenizer(folder), provenance)


def weights_sha256(folder: Path) -> str:
    """SHA-256 over the checkpoint's weight files (``*.safetensors``, ``*.bin``) in name order."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    if not files:
        raise FileNotFoundError(f"{folder} holds no weights (*.safetensors or *.bin)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_weights(model: Any, parent: Parent) -> None:
    """Copy the parent's trained weights into ``model`` (built from the fine-tune's document)."""
    from transformers import AutoModelForCausalLM

    loaded: Any = AutoModelForCausalLM.from_pretrained(str(parent.folder), local_files_only=True)
    model.load_state_dict(loaded.state_dict(), strict=True)  # copied onto model's device
