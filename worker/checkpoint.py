"""Training-state checkpoints: saved every N steps and at a warm stop, resumed by a later attempt.

A checkpoint describes itself, nanoGPT style: one `torch.save`d dict with the model, optimiser,
scheduler and scaler state dicts, the Python, NumPy, torch (and CUDA) RNG states, the data
position (the state of the generator that draws training batches, and how many it drew), the
step, the last reported values, the training seconds so far, and the run's identity (registry
run, attempt, config hash and the document). It is loaded with `weights_only=True`, so a
tampered artifact cannot run code on the worker.

It is stored as the MLflow artifact `resume/step-NNNNNNNNN.pt` of the attempt's MLflow run; the
tags `registry.checkpoint` (its path) and `registry.checkpoint_step` are set only once the upload
is complete, so a worker killed mid-upload leaves the previous checkpoint in force. An attempt
keeps its latest checkpoint only (older ones are deleted where the artifact store allows).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from registry.document.spec import DEFAULT_CHECKPOINT_EVERY_STEPS
from worker.tracking import CHECKPOINT_PATH_TAG, CHECKPOINT_STEP_TAG, ResumePoint, Tracker

log = logging.getLogger(__name__)

FORMAT = "config-registry/train-state"
FORMAT_VERSION = 1
ARTIFACT_DIR = "resume"


class CheckpointMismatch(ValueError):
    """A checkpoint that is not this run's, or not in a format this worker reads."""


def interval(doc: Mapping[str, Any]) -> int:
    """training.checkpoint_every_steps, or the default when it is null or absent."""
    every = doc["training"].get("checkpoint_every_steps")
    return int(every) if every is not None else DEFAULT_CHECKPOINT_EVERY_STEPS


def identity(job: Mapping[str, Any]) -> dict[str, Any]:
    """Who a checkpoint belongs to: the registry run, its attempt, config and document."""
    run = job["run"]
    return {
        "registry_run_id": int(run["id"]),
        "attempt": int(run.get("attempt") or 1),
        "config": str(run["config"]),
        "version": run.get("version"),
        "config_hash": str(run["config_hash"]),
        "document": dict(job["config"]),
    }


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state training reads, in forms `weights_only` loading accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return {
        "python": random.getstate(),
        "numpy": [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "data": generator.get_state(),
    }


def set_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    """Put back what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["data"])


def capture(parts: Any, step: int, last: Mapping[str, float], seconds: float) -> dict[str, Any]:
    """The state after `step` of a `_Stepper`-like `parts` (model, optimizer, scheduler,
    scaler, generator, p)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": step,
        "batches_drawn": step * parts.p.gradient_accumulation_steps,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        "rng": rng_state(parts.generator),
        "last": dict(last),
        "train_seconds": float(seconds),
    }


def restore(parts: Any, state: Mapping[str, Any]) -> None:
    """Load `state` into `parts` (see `capture`), random states included."""
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    parts.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], parts.generator)


def load(path: Path, job: Mapping[str, Any]) -> dict[str, Any]:
    """Read a checkpoint file; CheckpointMismatch unless it is this run's, in this format."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointMismatch(f"{path.name} is not a {FORMAT} checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatch(f"{path.name} has format_version {state.get('format_version')}")
    mine, theirs = identity(job), state.get("identity") or {}
    for key in ("registry_run_id", "config_hash"):
        if theirs.get(key) != mine[key]:
            raise CheckpointMismatch(f"{path.name} belongs to another run ({key} differs)")
    return state


class Checkpointer:
    """Saves training states of one attempt as MLflow artifacts; holds the one to resume."""

    def __init__(
        self,
        tracker: Tracker,
        every: int,
        workdir: Path,
        who: Mapping[str, Any],
        resume: Mapping[str, Any] | None = None,
    ) -> None:
        self.tracker, self.every, self.workdir = tracker, every, workdir
        self.who, self.resume = dict(who), resume
        self.saved_step = int(resume["step"]) if resume is not None else 0
        self.artifact: str | None = None

    def due(self, step: int, total: int) -> bool:
        """A periodic checkpoint after `step` (none after the last: the run ends there)."""
        return step % self.every == 0 and step < total

    def save(self, state: dict[str, Any]) -> bool:
        """Upload `state` (from `capture`), then point the tags at it; drop the older one.

        A store that fails costs the checkpoint, never the run (nor a warm stop): False.
        """
        try:
            self._save(state)
        except Exception:
            log.warning("checkpoint at step %s not stored", state["step"], exc_info=True)
            return False
        return True

    def _save(self, state: dict[str, Any]) -> None:
        step = int(state["step"])
        self.workdir.mkdir(parents=True, exist_ok=True)
        local = self.workdir / f"step-{step:09d}.pt"
        torch.save(state | {"identity": self.who}, local)
        self.tracker.flush()  # the history up to `step` is stored before the checkpoint is
        self.tracker.log_artifact_file(local, ARTIFACT_DIR)
        artifact = f"{ARTIFACT_DIR}/{local.name}"
        self.tracker.set_tags({CHECKPOINT_PATH_TAG: artifact, CHECKPOINT_STEP_TAG: str(step)})
        local.unlink(missing_ok=True)
        older, self.artifact, self.saved_step = self.artifact, artifact, step
        if older is not None and older != artifact:
            self.tracker.delete_artifact(older)
        log.info("checkpoint at step %d stored as %s", step, artifact)


def find_resume(
    tracker: Tracker, job: Mapping[str, Any], workdir: Path
) -> tuple[ResumePoint, dict[str, Any]] | None:
    """The latest checkpoint of an earlier attempt of this run, loaded, with its history
    copied into this attempt's MLflow run; None on a first attempt or when there is none.

    Anything wrong with it (unreadable, another run's, a store that fails) costs only time:
    the attempt then starts from step 0.
    """
    run = job["run"]
    attempt = int(run.get("attempt") or 1)
    if attempt <= 1:
        return None
    try:
        point = tracker.latest_checkpoint(str(run["config"]), int(run["id"]), attempt)
        if point is None:
            return None
        local = tracker.download_artifact(point.mlflow_run_id, point.artifact, workdir)
        state = load(local, job)
        tracker.copy_history(point.mlflow_run_id, point.step)
    except Exception:
        log.warning("run=%s: no usable checkpoint; starting at step 0", run["id"], exc_info=True)
        return None
    log.info("run=%s: resuming from attempt %d step %d", run["id"], point.attempt, point.step)
    return point, state
