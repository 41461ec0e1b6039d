"""The one entry point the daemon calls: run a claimed job end to end and track it in MLflow.

`execute()` opens the MLflow run first, so that even a run that fails loading its data has an
MLflow run to look at, and hands its id to the daemon at once: the first `on_progress` call is
`{"phase": "started", "mlflow_run_id": ...}`, every later one carries `mlflow_run_id` too, and
an exception leaving `execute()` has it as the attribute `mlflow_run_id`.

Kinds: `train` trains the config, evaluates, samples and stores a self-describing checkpoint
(with `from_run`, a fine-tune: it starts from that run's weights, see `worker.finetune`);
`evaluate` loads `from_run`'s checkpoint and measures it on this version's data with this
version's generation parameters (its metrics have no `train_loss`, and `tokens_per_second` is
the evaluation forward pass's throughput).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from registry.settings import DEFAULT_DATA_ROOT
from worker import checkpoint, distributed, finetune, task_runs
from worker import data as corpus
from worker import provenance as prov
from worker.evaluation import PROMPT_TOKENS, evaluate_loss, sample
from worker.memory import Memory
from worker.model import build_model, prepare_loaded
from worker.tokenizer import Tokenizer, build_tokenizer, load_tokenizer
from worker.tracking import Tracker
from worker.training import (
    EVAL_BATCHES,
    OnProgress,
    ShouldStop,
    Stopped,
    TrainParams,
    autocast,
    seed_everything,
)

__all__ = ["Result", "Stopped", "execute"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class Result:
    """What a finished run reports: its final metrics, provenance and MLflow run id."""

    status: str
    metrics: dict[str, float]
    provenance: dict[str, Any]
    mlflow_run_id: str


@dataclass
class _Context:
    """Everything a run needs, passed to the kind's runner."""

    job: Mapping[str, Any]
    doc: Mapping[str, Any]
    tracker: Tracker
    device: str
    should_stop: ShouldStop
    on_progress: OnProgress
    workdir: Path
    raw: bytes = b""
    #: Where `file:` datasets are read from (REGISTRY_DATA_ROOT); nothing outside it is read.
    data_root: Path = Path(DEFAULT_DATA_ROOT)
    #: The training state an earlier attempt saved, when this attempt resumes it.
    resume: dict[str, Any] | None = None
    #: A fine-tune's parent checkpoint (`worker.finetune`), downloaded before training.
    parent: finetune.Parent | None = None
    #: What the run reports as provenance; the runners add what they learn.
    provenance: dict[str, Any] = field(default_factory=dict)
    memory: Memory = field(default_factory=lambda: Memory("cpu"))

    @property
    def seed(self) -> int:
        return int(self.doc["training"]["seed"])

    def check_stop(self) -> None:
        """Between phases: raise Stopped if the daemon asks."""
        if self.should_stop():
            raise Stopped("stopped between phases")

    def log_final(self, step: int, metrics: Mapping[str, float]) -> None:
        self.tracker.log_metrics(step, metrics)
        self.tracker.flush()


def execute(
    job: Mapping[str, Any],
    tracker: Tracker,
    device: str,
    should_stop: ShouldStop,
    on_progress: OnProgress,
    workdir: Path,
    *,
    data_root: str | Path = DEFAULT_DATA_ROOT,
) -> Result:
    """Run `job` (a claim: run, config, lease, from_run); raises Stopped or the run's error."""
    from registry.document.spec import flatten

    run, doc = job["run"], job["config"]
    if run["kind"] not in RUNNERS:
        raise ValueError(f"unknown run kind {run['kind']!r}; expected one of {sorted(RUNNERS)}")
    run_id = tracker.start(
        experiment=str(run["config"]),
        run_name=f"{run['config']}-v{run['version']}-run{run['id']}",
        tags=_tags(job),
        params=flatten(dict(doc)),
    )

    def progress(info: dict[str, Any]) -> None:
        on_progress(info | {"mlflow_run_id": run_id})

    progress({"phase": "started"})
    ctx = _Context(job, doc, tracker, device, should_stop, progress, Path(workdir))
    ctx.data_root = Path(data_root)
    try:
        metrics, provenance = _run(ctx)
    except BaseException as exc:
        exc.mlflow_run_id = run_id  # type: ignore[attr-defined]
        stopped = isinstance(exc, Stopped | KeyboardInterrupt)
        _end_quietly(tracker, "KILLED" if stopped else "FAILED")
        raise
    tracker.end("FINISHED")
    return Result("succeeded", metrics, provenance, run_id)


def _run(ctx: _Context) -> tuple[dict[str, float], dict[str, Any]]:
    from registry.document.spec import dump

    ctx.memory = Memory(ctx.device)
    ctx.memory.start_phase()  # a long-lived daemon: no earlier run's peak is this run's
    seed_everything(ctx.seed, ctx.device)
    provenance = prov.collect(ctx.doc, _dataset_sha256(ctx), ctx.device, ctx.seed)
    ctx.provenance = provenance
    if ctx.job["run"]["kind"] == "train":
        provenance["resumed_from"] = _find_resume(ctx)
        ctx.parent = _find_parent(ctx)
    ctx.tracker.log_artifact_text(dump(dict(ctx.doc), "yaml"), "config.yaml")
    ctx.tracker.log_artifact_text(json.dumps(provenance, indent=2), "provenance.json")
    ctx.check_stop()
    metrics = _runner(ctx)(ctx)
    prov.note(provenance, ctx.device)  # as the run ran (training may have set TF32)
    ctx.tracker.log_artifact_text(json.dumps(provenance, indent=2), "provenance.json")
    return metrics, provenance


def _runner(ctx: _Context) -> Callable[[_Context], dict[str, float]]:
    """The causal LM's runner for the kind, or the task's own train runner."""
    task, kind = ctx.doc.get("task", "causal_lm"), ctx.job["run"]["kind"]
    if task == "classification":
        if kind == "evaluate":
            return task_runs.evaluate_classifier
        return lambda c: task_runs.train_classifier(c, _save_checkpoint, _checkpointer(c))
    if task == "multimodal_matching":
        if kind == "evaluate":
            return task_runs.evaluate_matcher
        return lambda c: task_runs.train_matcher(c, _save_checkpoint, _checkpointer(c))
    return RUNNERS[kind]


def _dataset_sha256(ctx: _Context) -> str:
    """Load a causal LM's corpus into ctx.raw; hash the task's dataset (CONTRACT 5.4)."""
    if ctx.doc.get("task", "causal_lm") in task_runs.TASKS:
        return task_runs.dataset_sha256(ctx.doc, ctx.data_root)
    ctx.raw = corpus.load_corpus(ctx.doc["data"]["dataset"], ctx.data_root)
    return corpus.dataset_sha256(ctx.raw)


def _find_resume(ctx: _Context) -> dict[str, int] | None:
    """Load the latest checkpoint of an earlier attempt (CONTRACT 5.3): {"attempt", "step"}."""
    found = checkpoint.find_resume(ctx.tracker, ctx.job, ctx.workdir / "resume-from")
    if found is None:
        return None
    point, ctx.resume = found
    ctx.on_progress({"phase": "resumed", "attempt": point.attempt, "step": point.step})
    return {"attempt": point.attempt, "step": point.step}


def _find_parent(ctx: _Context) -> finetune.Parent | None:
    """A fine-tune's parent checkpoint, downloaded; provenance names it (from_run keys)."""
    from_run = finetune.parent_of(ctx.job)
    if from_run is None:
        return None
    ctx.on_progress({"phase": "loading", "from_run": from_run.get("id")})
    parent = finetune.download(ctx.tracker, from_run, ctx.workdir)
    ctx.provenance.update(parent.provenance)
    return parent


def _end_quietly(tracker: Tracker, status: str) -> None:
    """Close the MLflow run without hiding the error that ended it."""
    try:
        tracker.end(status)
    except Exception:
        log.exception("could not mark the MLflow run %s", status)


def _tags(job: Mapping[str, Any]) -> dict[str, str]:
    run = job["run"]
    tags = {
        "registry.config": str(run["config"]),
        "registry.version": str(run["version"]),
        "registry.config_hash": str(run["config_hash"]),
        "registry.run_id": str(run["id"]),
        "registry.attempt": str(run.get("attempt", 1)),
        "registry.kind": str(run["kind"]),
    }
    if run.get("reproduces") is not None:
        tags["registry.reproduces"] = str(run["reproduces"])
    if job.get("from_run"):
        tags["registry.from_run"] = str(job["from_run"]["id"])
        tags["registry.from_mlflow_run_id"] = str(job["from_run"].get("mlflow_run_id"))
    return tags


def _train(ctx: _Context) -> dict[str, float]:
    """Tokenizer -> model -> train -> sample -> checkpoint."""
    from registry.document.architecture import resolve_vocab_size

    d = ctx.doc["data"]
    train_raw, val_raw = corpus.split_bytes(ctx.raw, float(d["validation_fraction"]))
    if ctx.parent is not None:  # a fine-tune reads the token ids its weights were trained on
        tokenizer = ctx.parent.tokenizer
    else:
        tokenizer = build_tokenizer(d["tokenizer"], train_raw, resolve_vocab_size(dict(ctx.doc)))
    splits = corpus.Splits(tokenizer.encode_corpus(train_raw), tokenizer.encode_corpus(val_raw))
    splits.check(int(d["seq_len"]))
    ctx.check_stop()
    torch.manual_seed(ctx.seed)  # the initial weights depend on the seed alone
    model = build_model(ctx.doc, tokenizer.vocab_size).to(ctx.device)
    if ctx.parent is not None and ctx.resume is None:  # a resumed checkpoint holds newer weights
        finetune.load_weights(model, ctx.parent)
    prov.note(ctx.provenance, ctx.device, model)
    params = TrainParams.from_doc(ctx.doc)
    result = distributed.trainer(ctx.doc, tokenizer.vocab_size, ctx.provenance)(
        model,
        splits,
        params,
        ctx.device,
        ctx.tracker,
        ctx.should_stop,
        ctx.on_progress,
        _checkpointer(ctx),
    )
    trained = {"peak_memory_mb": ctx.memory.peak_mb(), **ctx.memory.peaks()}
    ctx.check_stop()
    ctx.memory.start_phase()  # sampling's peak is its own
    final = _sample(ctx, model, tokenizer, splits.validation)
    final["tokens_per_second"] = result.metrics["tokens_per_second"]
    final |= trained | ctx.memory.peaks("eval_")
    ctx.log_final(result.steps, final)  # train() already logged the rest
    metrics = result.metrics | final
    _save_checkpoint(ctx, model, tokenizer, metrics)
    return metrics


def _checkpointer(ctx: _Context) -> checkpoint.Checkpointer:
    """Saves the training state as the config says; resumes an earlier attempt's."""
    return checkpoint.Checkpointer(
        ctx.tracker,
        checkpoint.interval(ctx.doc),
        ctx.workdir / "resume",
        checkpoint.identity(ctx.job),
        ctx.resume,
    )


def _sample(ctx: _Context, model: Any, tokenizer: Tokenizer, val: torch.Tensor) -> dict[str, float]:
    """Sample with the config's generation parameters; the text goes to samples.txt."""
    generation = ctx.doc["generation"]
    ctx.on_progress({"phase": "sampling"})
    length = max(
        1,
        min(
            PROMPT_TOKENS,
            int(ctx.doc["data"]["seq_len"]),
            int(generation["max_length"]) // 2,
            len(val) // 2,
        ),
    )
    prompt_ids = corpus.prompts(val, int(generation["per_device_eval_batch_size"]), length)
    with autocast(ctx.device, ctx.doc["training"]["precision"]):
        samples = sample(model, tokenizer, prompt_ids, generation, ctx.device, ctx.seed)
    ctx.tracker.log_artifact_text(samples.text, "samples.txt")
    return samples.metrics


def _save_checkpoint(
    ctx: _Context, model: Any, tokenizer: Tokenizer, metrics: Mapping[str, float]
) -> None:
    """Weights, tokenizer, the registry config and the run's identity, in one folder."""
    from registry.document.spec import dump

    ctx.on_progress({"phase": "checkpoint"})
    folder = ctx.workdir / CHECKPOINT
    shutil.rmtree(folder, ignore_errors=True)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
    else:  # a matching model: its parts' weights in one safetensors file
        from safetensors.torch import save_model

        folder.mkdir(parents=True)
        save_model(model, str(folder / "model.safetensors"))
    tokenizer.save(folder)
    (folder / "registry_config.yaml").write_text(dump(dict(ctx.doc), "yaml"))
    identity = {"run": dict(ctx.job["run"]), "metrics": dict(metrics)}
    (folder / "registry_run.json").write_text(json.dumps(identity, indent=2, default=str) + "\n")
    ctx.tracker.log_artifact_dir(folder, CHECKPOINT)


def _evaluate(ctx: _Context) -> dict[str, float]:
    """Load from_run's checkpoint; validation metrics and sampling with this version's config."""
    from transformers import AutoModelForCausalLM

    from_run = ctx.job.get("from_run") or {}
    if not from_run.get("mlflow_run_id"):
        raise ValueError("an evaluate run needs from_run with an mlflow_run_id to load")
    ctx.on_progress({"phase": "loading", "from_run": from_run.get("id")})
    ctx.memory.start_phase()
    folder = ctx.tracker.load_checkpoint(str(from_run["mlflow_run_id"]), ctx.workdir / "from_run")
    tokenizer = load_tokenizer(folder)
    loaded: Any = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    model = prepare_loaded(loaded, ctx.doc, ctx.device)
    prov.note(ctx.provenance, ctx.device, model)
    d = ctx.doc["data"]
    _, val_raw = corpus.split_bytes(ctx.raw, float(d["validation_fraction"]))
    val = tokenizer.encode_corpus(val_raw)
    ctx.check_stop()
    ctx.on_progress({"phase": "evaluating"})
    batches = corpus.eval_batches(
        corpus.on_device(val, ctx.device),  # gathered on the GPU: no copy per batch
        int(ctx.doc["generation"]["per_device_eval_batch_size"]),
        int(d["seq_len"]),
        EVAL_BATCHES,
    )
    amp = autocast(ctx.device, ctx.doc["training"]["precision"])
    scored = evaluate_loss(model, batches, ctx.device, amp)
    metrics = {k: scored[k] for k in ("val_loss", "val_perplexity", "val_accuracy")}
    metrics["tokens_per_second"] = scored["eval_tokens"] / max(scored["eval_seconds"], 1e-9)
    ctx.check_stop()
    metrics |= _sample(ctx, model, tokenizer, val)
    metrics["peak_memory_mb"] = ctx.memory.peak_mb()
    metrics |= ctx.memory.peaks("eval_")
    ctx.log_final(0, metrics)
    return metrics


RUNNERS: dict[str, Callable[[_Context], dict[str, float]]] = {
    "train": _train,
    "evaluate": _evaluate,
}
