"""The trained weights a classification or matching run starts from (a fine-tune) or scores
(an evaluate run): another run's ``checkpoint`` artifact, read back into a model.

A fine-tune may start from a run of its own task (every weight is copied, strictly) or from a
causal LM's run (CONTRACT 5.3; the registry checks which, naming ``task``): then the LM's
trained backbone (embeddings, decoder layers, final norm; not ``lm_head``) becomes the
classifier's backbone or the matching model's text encoder, and the rest (the score head; the
projections, matching head and ViT) starts from this run's seeded initialisation. A
classifier fine-tuned from a classifier must read the same labels in the same order: the
label names are stored with the weights (``id2label``), and other labels fail naming
``data.dataset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.document.parse import parse_document
from registry.document.spec import normalize
from worker.data import DatasetError

CONFIG_FILE = "registry_config.yaml"
MATCHER_FILE = "model.safetensors"
BACKBONE_PREFIX = "model."


def trained_document(folder: Path) -> dict[str, Any]:
    """The normalised document the checkpoint's weights were trained with."""
    return normalize(parse_document((folder / CONFIG_FILE).read_text(encoding="utf-8"), "yaml"))


def trained_task(folder: Path) -> str:
    return str(trained_document(folder).get("task", "causal_lm"))


def backbone_state(folder: Path) -> dict[str, Any]:
    """A causal LM checkpoint's backbone weights, named as in ``LlamaModel`` (not lm_head)."""
    from transformers import AutoModelForCausalLM

    loaded: Any = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    state = loaded.state_dict()
    return {k[len(BACKBONE_PREFIX) :]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}


def label_names(model: Any) -> list[str]:
    """A sequence classifier's labels in index order (``config.id2label``)."""
    mapping = model.config.id2label
    return [str(mapping[i]) for i in sorted(mapping, key=int)]


def check_labels(saved: list[str], labels: list[str], dataset: str) -> None:
    if saved != labels:
        raise DatasetError(
            f"data.dataset: {dataset} has labels {labels}; the weights of from_run were "
            f"trained on {saved} (the same labels, in the same order, are needed)"
        )


def load_classifier_weights(model: Any, folder: Path, labels: list[str], dataset: str) -> str:
    """Copy from_run's weights into a freshly built classifier; returns the parent's task."""
    from transformers import AutoModelForSequenceClassification

    task = trained_task(folder)
    if task == "causal_lm":
        model.model.load_state_dict(backbone_state(folder), strict=True)
        return task
    loaded: Any = AutoModelForSequenceClassification.from_pretrained(
        str(folder), local_files_only=True
    )
    check_labels(label_names(loaded), labels, dataset)
    model.load_state_dict(loaded.state_dict(), strict=True)
    return task


def load_matcher_weights(model: Any, folder: Path) -> str:
    """Copy from_run's weights into a freshly built matching model; returns the parent's task."""
    from safetensors.torch import load_model

    task = trained_task(folder)
    if task == "causal_lm":
        model.text.load_state_dict(backbone_state(folder), strict=True)
        return task
    load_model(model, str(folder / MATCHER_FILE), strict=True, device=str(model.head.weight.device))
    return task
