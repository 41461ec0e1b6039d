"""The runners of ``task: classification`` and ``task: multimodal_matching``.

A train run loads its task's data, builds the model with the seed alone deciding the initial
weights (a fine-tune then copies from_run's weights in, :mod:`worker.task_weights`), trains it
with :mod:`worker.taskloop` (on ``resources.gpus`` ranks: :mod:`worker.distributed_tasks`)
and stores a checkpoint. An evaluate run scores from_run's weights
on this version's validation split (a matching model with this version's fusion weights).
Both save training states as the causal LM does (``saver``, execute's checkpointer): a
retried attempt resumes after the latest checkpoint of an earlier one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from registry.document.architecture import resolve_vocab_size
from registry.document.visual import has_visual_encoder, visual_sizes
from worker import (
    classification,
    distributed,
    distributed_tasks,
    imagecaptions,
    matching,
    task_weights,
    textlabels,
)
from worker import provenance as prov
from worker.checkpoint import Checkpointer
from worker.finetune import Parent
from worker.memory import Memory
from worker.model import build_classifier, prepare_loaded
from worker.tokenizer import Tokenizer, load_tokenizer
from worker.tracking import Tracker
from worker.training import OnProgress, ShouldStop, TrainParams, autocast


class _Context(Protocol):
    """What these runners read of :class:`worker.execute._Context`."""

    job: Mapping[str, Any]
    doc: Mapping[str, Any]
    tracker: Tracker
    device: str
    data_root: Path
    workdir: Path
    provenance: dict[str, Any]
    memory: Memory
    parent: Parent | None

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


def dataset_sha256(doc: Mapping[str, Any], data_root: Path) -> str:
    """The hash of what the run reads: a matching run without a visual encoder reads no image."""
    plain, dataset = dict(doc), doc["data"]["dataset"]
    if doc["task"] == "classification":
        return textlabels.dataset_hash(dataset, data_root)
    size = visual_sizes(plain)["image_size"]
    return imagecaptions.dataset_hash(dataset, size, data_root, has_visual_encoder(plain))


def train_classifier(
    ctx: _Context, save: SaveCheckpoint, saver: Checkpointer | None = None
) -> dict[str, float]:
    """Labelled text -> classifier -> train and score (worker.classification) -> checkpoint."""
    distributed.refuse_unsupported(ctx.doc)
    parent = ctx.parent
    tokenizer = parent.tokenizer if parent is not None else None  # a fine-tune reads as its parent
    data = classification.load(ctx.doc, ctx.data_root, _vocab(ctx), tokenizer)
    ctx.provenance["labels"] = data.labels
    ctx.check_stop()
    torch.manual_seed(ctx.seed)  # the initial weights depend on the seed alone
    model = build_classifier(ctx.doc, data.tokenizer.vocab_size, len(data.labels))
    if parent is not None:
        dataset = ctx.doc["data"]["dataset"]
        task = task_weights.load_classifier_weights(model, parent.folder, data.labels, dataset)
        ctx.provenance["from_task"] = task
    model = model.to(ctx.device)
    prov.note(ctx.provenance, ctx.device, model)
    params = TrainParams.from_doc(ctx.doc)
    metrics = distributed_tasks.train(ctx, model, data, data.tokenizer.vocab_size, params, saver)
    metrics = _finish(ctx, params, metrics)
    model.config.id2label = dict(enumerate(data.labels))
    model.config.label2id = {name: i for i, name in enumerate(data.labels)}
    save(ctx, model, data.tokenizer, metrics)
    return metrics


def train_matcher(
    ctx: _Context, save: SaveCheckpoint, saver: Checkpointer | None = None
) -> dict[str, float]:
    """Image-caption pairs -> matching model -> train and score (worker.matching) -> checkpoint."""
    from worker.matching_model import build_matcher

    distributed.refuse_unsupported(ctx.doc)
    parent = ctx.parent
    tokenizer = parent.tokenizer if parent is not None else None
    data = matching.load(ctx.doc, ctx.data_root, _vocab(ctx), tokenizer)
    ctx.provenance["visual_encoder"] = has_visual_encoder(dict(ctx.doc))
    ctx.check_stop()
    torch.manual_seed(ctx.seed)  # the initial weights depend on the seed alone
    model = build_matcher(ctx.doc, data.tokenizer.vocab_size)
    if parent is not None:
        ctx.provenance["from_task"] = task_weights.load_matcher_weights(model, parent.folder)
    model = model.to(ctx.device)
    prov.note(ctx.provenance, ctx.device, model.text)
    params = TrainParams.from_doc(ctx.doc)
    metrics = distributed_tasks.train(ctx, model, data, data.tokenizer.vocab_size, params, saver)
    metrics = _finish(ctx, params, metrics)
    save(ctx, model, data.tokenizer, metrics)
    return metrics


def evaluate_classifier(ctx: _Context) -> dict[str, float]:
    """from_run's classifier scored on this version's validation split."""
    from transformers import AutoModelForSequenceClassification

    folder = _download(ctx)
    tokenizer = load_tokenizer(folder)
    loaded: Any = AutoModelForSequenceClassification.from_pretrained(
        str(folder), local_files_only=True
    )
    model = prepare_loaded(loaded, ctx.doc, ctx.device)
    data = classification.load(ctx.doc, ctx.data_root, _vocab(ctx), tokenizer)
    saved = task_weights.label_names(model)
    task_weights.check_labels(saved, data.labels, ctx.doc["data"]["dataset"])
    ctx.provenance["labels"] = data.labels
    prov.note(ctx.provenance, ctx.device, model)
    ctx.on_progress({"phase": "evaluating"})
    amp = lambda: autocast(ctx.device, ctx.doc["training"]["precision"])  # noqa: E731
    scored = classification.evaluate(model, data.validation.to(ctx.device), _batch(ctx), amp)
    return _final(ctx, scored | {"baseline_accuracy": data.baseline_accuracy})


def evaluate_matcher(ctx: _Context) -> dict[str, float]:
    """from_run's matching model, with this version's fusion weights, on its validation split."""
    from safetensors.torch import load_model

    from worker.matching_model import build_matcher

    folder = _download(ctx)
    tokenizer = load_tokenizer(folder)
    trained = task_weights.trained_document(folder)
    trained["multimodal"] |= {
        k: ctx.doc["multimodal"][k] for k in ("visual_encoder_weight", "text_encoder_weight")
    }
    model = build_matcher(trained, tokenizer.vocab_size)
    load_model(model, str(folder / task_weights.MATCHER_FILE), strict=True)
    model = model.to(ctx.device)
    data = matching.load(ctx.doc, ctx.data_root, _vocab(ctx), tokenizer)
    ctx.provenance["visual_encoder"] = model.visual is not None
    prov.note(ctx.provenance, ctx.device, model.text)
    ctx.on_progress({"phase": "evaluating"})
    amp = lambda: autocast(ctx.device, ctx.doc["training"]["precision"])  # noqa: E731
    validation = data.validation.to(ctx.device)
    scored = matching.evaluate(model, validation, _batch(ctx), amp, ctx.seed)
    scored |= {"baseline_retrieval_at_1": matching.chance_at_1(validation.groups)}
    return _final(ctx, scored | {"baseline_accuracy": 0.5})


def _vocab(ctx: _Context) -> int:
    return resolve_vocab_size(dict(ctx.doc))


def _batch(ctx: _Context) -> int:
    return int(ctx.doc["generation"]["per_device_eval_batch_size"])


def _download(ctx: _Context) -> Path:
    """from_run's checkpoint, downloaded under the run's work directory."""
    from_run = ctx.job.get("from_run") or {}
    if not from_run.get("mlflow_run_id"):
        raise ValueError("an evaluate run needs from_run with an mlflow_run_id to load")
    ctx.on_progress({"phase": "loading", "from_run": from_run.get("id")})
    ctx.memory.start_phase()
    return ctx.tracker.load_checkpoint(str(from_run["mlflow_run_id"]), ctx.workdir / "from_run")


def _final(ctx: _Context, metrics: dict[str, float]) -> dict[str, float]:
    metrics["peak_memory_mb"] = ctx.memory.peak_mb()
    metrics |= ctx.memory.peaks("eval_")
    ctx.log_final(0, metrics)
    return metrics


def _finish(ctx: _Context, params: TrainParams, metrics: dict[str, float]) -> dict[str, float]:
    """Log the run's throughput and memory (the loop logged the rest)."""
    final = {k: metrics[k] for k in ("tokens_per_second", "peak_memory_mb")}
    final |= ctx.memory.peaks()
    ctx.log_final(params.num_training_steps, final)
    return metrics | final
