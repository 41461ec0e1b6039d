"""The train runners of ``task: classification`` and ``task: multimodal_matching``.

Each loads its task's data, builds the model with the seed alone deciding the initial weights,
trains it with :mod:`worker.taskloop` and stores a checkpoint. Neither resumes a crashed
attempt mid-run (a retried attempt trains again from step 1), and neither is fine-tuned or
evaluated from a run yet: :func:`refuse_unbuilt` says so, naming ``task``, before any data load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from registry.document.architecture import resolve_vocab_size
from registry.document.visual import has_visual_encoder, visual_sizes
from worker import classification, finetune, imagecaptions, matching, textlabels
from worker import provenance as prov
from worker.memory import Memory
from worker.model import build_classifier
from worker.tokenizer import Tokenizer
from worker.tracking import Tracker
from worker.training import OnProgress, ShouldStop, TrainParams


class _Context(Protocol):
    """What these runners read of :class:`worker.execute._Context`."""

    job: Mapping[str, Any]
    doc: Mapping[str, Any]
    tracker: Tracker
    device: str
    data_root: Path
    provenance: dict[str, Any]
    memory: Memory

    @property
    def should_stop(self) -> ShouldStop: ...
    @property
    def on_progress(self) -> OnProgress: ...
    @property
    def seed(self) -> int: ...
    def check_stop(self) -> None: ...
    def log_final(self, step: int, metrics: Mapping[str, float]) -> None: ...


#: execute's checkpoint writer: (ctx, model, tokenizer, metrics).
SaveCheckpoint = Callable[[Any, Any, Tokenizer, Mapping[str, float]], None]
TASKS = ("classification", "multimodal_matching")


def refuse_unbuilt(job: Mapping[str, Any], task: str) -> None:
    """Evaluate runs and fine-tunes (from_run) of these tasks are not built: fail clearly."""
    if job["run"]["kind"] != "train" or finetune.parent_of(job) is not None:
        raise NotImplementedError(
            f"task: {task} runs train from random weights only; evaluate runs and "
            f"fine-tunes (from_run) of a {task} model are not built yet"
        )


def dataset_sha256(doc: Mapping[str, Any], data_root: Path) -> str:
    """The hash of what the run reads: a matching run without a visual encoder reads no image."""
    plain, dataset = dict(doc), doc["data"]["dataset"]
    if doc["task"] == "classification":
        return textlabels.dataset_hash(dataset, data_root)
    size = visual_sizes(plain)["image_size"]
    return imagecaptions.dataset_hash(dataset, size, data_root, has_visual_encoder(plain))


def train_classifier(ctx: _Context, save: SaveCheckpoint) -> dict[str, float]:
    """Labelled text -> classifier -> train and score (worker.classification) -> checkpoint."""
    ctx.provenance["resumed_from"] = None
    data = classification.load(ctx.doc, ctx.data_root, resolve_vocab_size(dict(ctx.doc)))
    ctx.provenance["labels"] = data.labels
    ctx.check_stop()
    torch.manual_seed(ctx.seed)  # the initial weights depend on the seed alone
    model = build_classifier(ctx.doc, data.tokenizer.vocab_size, len(data.labels))
    model = model.to(ctx.device)
    prov.note(ctx.provenance, ctx.device, model)
    params = TrainParams.from_doc(ctx.doc)
    metrics = classification.train_classifier(
        model, data, params, ctx.device, ctx.tracker, ctx.should_stop, ctx.on_progress
    )
    metrics = _finish(ctx, params, metrics)
    model.config.id2label = dict(enumerate(data.labels))
    model.config.label2id = {name: i for i, name in enumerate(data.labels)}
    save(ctx, model, data.tokenizer, metrics)
    return metrics


def train_matcher(ctx: _Context, save: SaveCheckpoint) -> dict[str, float]:
    """Image-caption pairs -> matching model -> train and score (worker.matching) -> checkpoint."""
    from worker.matching_model import build_matcher

    ctx.provenance["resumed_from"] = None
    data = matching.load(ctx.doc, ctx.data_root, resolve_vocab_size(dict(ctx.doc)))
    ctx.provenance["visual_encoder"] = has_visual_encoder(dict(ctx.doc))
    ctx.check_stop()
    torch.manual_seed(ctx.seed)  # the initial weights depend on the seed alone
    model = build_matcher(ctx.doc, data.tokenizer.vocab_size).to(ctx.device)
    prov.note(ctx.provenance, ctx.device, model.text)
    params = TrainParams.from_doc(ctx.doc)
    metrics = matching.train_matcher(
        model, data, params, ctx.device, ctx.tracker, ctx.should_stop, ctx.on_progress
    )
    metrics = _finish(ctx, params, metrics)
    save(ctx, model, data.tokenizer, metrics)
    return metrics


def _finish(ctx: _Context, params: TrainParams, metrics: dict[str, float]) -> dict[str, float]:
    """Log the run's throughput and memory (the loop logged the rest)."""
    final = {k: metrics[k] for k in ("tokens_per_second", "peak_memory_mb")}
    final |= ctx.memory.peaks()
    ctx.log_final(params.num_training_steps, final)
    return metrics | final
