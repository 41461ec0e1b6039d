"""Training, nanoGPT-clear: build the model, optimiser and schedule, then one lean loop.

Precision: `fp32` runs as is; `bf16` autocasts to bfloat16 on any device; `fp16` autocasts to
float16 with a GradScaler on CUDA, and to bfloat16 on the CPU (CPU float16 kernels are slow and
a CPU has no loss-scaling story; bfloat16 gives the same memory saving without overflow).
Weights and optimiser state stay float32 in every case.

The loop synchronises with the device only when it reports (about once a second, before each
evaluation and at the end): per-step losses stay on the device until then and go to the
tracker in one batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from registry.document.estimate import warmup_steps
from worker import checkpoint
from worker.data import Splits, eval_batches, get_batch
from worker.evaluation import causal_lm_loss, evaluate_loss
from worker.tracking import Tracker

log = logging.getLogger(__name__)

EVAL_BATCHES = 8  # fixed validation windows per evaluation: the same tokens every time
PROGRESS_EVERY_S = 1.0

ShouldStop = Callable[[], bool]
OnProgress = Callable[[dict[str, Any]], None]


class Stopped(Exception):
    """The run was asked to stop (cancelled, lease lost or the worker shutting down)."""


@dataclass(frozen=True)
class TrainParams:
    """The hyperparameters `train()` reads, from the config's training and data sections."""

    learning_rate: float
    scheduler: str
    warmup_steps: int
    num_training_steps: int
    batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    weight_decay: float
    max_grad_norm: float
    precision: str
    seed: int
    eval_every_steps: int
    seq_len: int
    eval_batch_size: int

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> TrainParams:
        """Read a normalised config document."""
        t, d = doc["training"], doc["data"]
        steps = int(t["num_training_steps"])
        warmup = warmup_steps(dict(doc))  # the estimate's and the form's number, exactly
        return cls(
            learning_rate=float(t["learning_rate"]),
            scheduler=t["scheduler"],
            warmup_steps=warmup,
            num_training_steps=steps,
            batch_size=int(t["per_device_train_batch_size"]),
            gradient_accumulation_steps=int(t["gradient_accumulation_steps"]),
            gradient_checkpointing=bool(t["gradient_checkpointing"]),
            weight_decay=float(t["weight_decay"]),
            max_grad_norm=float(t["max_grad_norm"]),
            precision=t["precision"],
            seed=int(t["seed"]),
            eval_every_steps=int(t["eval_every_steps"]),
            seq_len=int(d["seq_len"]),
            eval_batch_size=int(doc["generation"]["per_device_eval_batch_size"]),
        )

    @property
    def tokens_per_step(self) -> int:
        """Training tokens one optimiser step consumes."""
        return self.batch_size * self.gradient_accumulation_steps * self.seq_len


def seed_everything(seed: int, device: str) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    if device.startswith("cuda"):
        # cuBLAS is only deterministic with a fixed workspace; must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)  # strict: an op without a deterministic kernel raises


def build_optimizer(model: torch.nn.Module, p: TrainParams) -> torch.optim.Optimizer:
    """AdamW; matrices decay, norms and biases (1-D parameters) do not."""
    params = [q for q in model.parameters() if q.requires_grad]
    groups = [
        {"params": [q for q in params if q.dim() >= 2], "weight_decay": p.weight_decay},
        {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=p.learning_rate)


def build_scheduler(optimizer: torch.optim.Optimizer, p: TrainParams) -> Any:
    """Linear, cosine or constant learning rate, each after a linear warmup."""
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    if p.scheduler == "constant":
        return get_constant_schedule_with_warmup(optimizer, p.warmup_steps)
    if p.scheduler == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, p.warmup_steps, p.num_training_steps)
    return get_linear_schedule_with_warmup(optimizer, p.warmup_steps, p.num_training_steps)


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The autocast context for `precision` on `device` (see the module docstring)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    dtype = torch.float16 if precision == "fp16" and device_type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device_type, dtype=dtype)


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated, or on the CPU the process's peak resident set size."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class _Clock:
    """Training wall time, excluding evaluation."""

    seconds: float = 0.0
    since: float = field(default_factory=time.perf_counter)

    def pause(self) -> None:
        self.seconds += time.perf_counter() - self.since

    def resume(self) -> None:
        self.since = time.perf_counter()

    def now(self) -> float:
        return self.seconds + time.perf_counter() - self.since


class _Reporter:
    """Holds per-step values on the device; reports them in one sync at most once a second."""

    def __init__(self, p: TrainParams, tracker: Tracker, on_progress: OnProgress | None) -> None:
        self.p, self.tracker, self.on_progress = p, tracker, on_progress
        self.pending: list[tuple[int, float, torch.Tensor, torch.Tensor]] = []
        self.next_at = time.monotonic() + PROGRESS_EVERY_S
        self.last: dict[str, float] = {}
        self.bar = tqdm(
            total=p.num_training_steps,
            desc="train",
            unit="step",
            disable=not sys.stderr.isatty(),
            leave=False,
        )

    def add(self, step: int, lr: float, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.pending.append((step, lr, loss, grad_norm))

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def report(self, clock: _Clock) -> None:
        """Send pending steps to the tracker, then tell on_progress where the run is."""
        if self.pending:
            pairs = [torch.stack([loss, norm]) for _, _, loss, norm in self.pending]
            values = torch.stack(pairs).tolist()
            for (step, lr, _, _), (loss, norm) in zip(self.pending, values, strict=True):
                self.tracker.log_metrics(
                    step, {"train_loss": loss, "learning_rate": lr, "grad_norm": norm}
                )
            self.bar.update(len(self.pending))
            step = self.pending[-1][0]
            self.last.update(train_loss=values[-1][0], learning_rate=self.pending[-1][1])
            self.last["tokens_per_second"] = step * self.p.tokens_per_step / max(clock.now(), 1e-9)
            self.pending = []
            self.bar.set_postfix(loss=f"{self.last['train_loss']:.4f}", refresh=False)
            self._progress(step)
        self.next_at = time.monotonic() + PROGRESS_EVERY_S

    def _progress(self, step: int) -> None:
        if self.on_progress is not None:
            info = {"phase": "train", "step": step, "total": self.p.num_training_steps}
            self.on_progress(info | self.last)

    def close(self) -> None:
        self.bar.close()


@dataclass(frozen=True)
class TrainResult:
    """The final value of each metric `train()` logged, and the step it stopped at."""

    metrics: dict[str, float]
    steps: int


class _Stepper:
    """One optimiser step: accumulate micro-batches, clip, step, schedule."""

    def __init__(self, model: Any, splits: Splits, p: TrainParams, device: str) -> None:
        self.model, self.splits, self.p, self.device = model, splits, p, device
        self.optimizer = build_optimizer(model, p)
        self.scheduler = build_scheduler(self.optimizer, p)
        use_scaler = p.precision == "fp16" and torch.device(device).type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.amp = lambda: autocast(device, p.precision)
        self.generator = torch.Generator().manual_seed(p.seed)

    def step(self) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Returns the learning rate used, the step's mean loss and the pre-clip grad norm."""
        lr = float(self.scheduler.get_last_lr()[0])
        total = torch.zeros((), device=self.device)
        for _ in range(self.p.gradient_accumulation_steps):
            x, y = get_batch(self.splits.train, self.p.batch_size, self.p.seq_len, self.generator)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with self.amp():
                logits = self.model(input_ids=x, use_cache=False).logits
            loss = causal_lm_loss(logits, y) / self.p.gradient_accumulation_steps
            self.scaler.scale(loss).backward()
            total += loss.detach()
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.p.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr, total, norm.detach()

    def evaluate(self) -> dict[str, float]:
        """Validation metrics on the fixed evaluation windows."""
        batches = eval_batches(
            self.splits.validation, self.p.eval_batch_size, self.p.seq_len, EVAL_BATCHES
        )
        metrics = evaluate_loss(self.model, batches, self.device, self.amp())
        return {k: metrics[k] for k in ("val_loss", "val_perplexity", "val_accuracy")}


def train(
    model: Any,
    splits: Splits,
    p: TrainParams,
    device: str,
    tracker: Tracker,
    should_stop: ShouldStop = lambda: False,
    on_progress: OnProgress | None = None,
    checkpointer: checkpoint.Checkpointer | None = None,
) -> TrainResult:
    """Train `model` (on `device`) for p.num_training_steps; raises Stopped if asked. A
    `checkpointer` saves the state as it says and resumes from its `resume` state."""
    splits.check(p.seq_len)
    if p.precision == "fp16" and torch.device(device).type == "cpu":
        log.warning("precision fp16 runs as bfloat16 autocast on the CPU")
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    stepper = _Stepper(model, splits, p, device)
    reporter, clock = _Reporter(p, tracker, on_progress), _Clock()
    first = _resume(checkpointer, stepper, reporter, clock)
    try:
        for step in range(first, p.num_training_steps + 1):
            if should_stop():
                reporter.report(clock)  # keep the history up to the stop
                _checkpoint(checkpointer, stepper, reporter, clock, step - 1)  # a warm stop
                raise Stopped(f"stopped at step {step} of {p.num_training_steps}")
            reporter.add(step, *stepper.step())
            at_eval = step % p.eval_every_steps == 0 or step == p.num_training_steps
            if at_eval or reporter.due():
                reporter.report(clock)  # syncs: the clock then holds finished work only
            if at_eval:
                _evaluate(step, stepper, tracker, reporter, clock)
            if checkpointer is not None and checkpointer.due(step, p.num_training_steps):
                _checkpoint(checkpointer, stepper, reporter, clock, step)
    finally:
        reporter.close()
    return _result(reporter, clock, p, device)


def _evaluate(
    step: int, stepper: _Stepper, tracker: Tracker, reporter: _Reporter, clock: _Clock
) -> None:
    clock.pause()
    val = stepper.evaluate()
    tracker.log_metrics(step, val)
    reporter.last.update(val)
    clock.resume()


def _resume(
    checkpointer: checkpoint.Checkpointer | None,
    stepper: _Stepper,
    reporter: _Reporter,
    clock: _Clock,
) -> int:
    """The first step to train: 1, or the step after the checkpoint being resumed."""
    state = checkpointer.resume if checkpointer is not None else None
    if state is None:
        return 1
    checkpoint.restore(stepper, state)
    reporter.last.update(state["last"])
    clock.seconds = float(state["train_seconds"])
    reporter.bar.update(int(state["step"]))
    return int(state["step"]) + 1


def _checkpoint(
    checkpointer: checkpoint.Checkpointer | None,
    stepper: _Stepper,
    reporter: _Reporter,
    clock: _Clock,
    step: int,
) -> None:
    """Save the state after `step` unless it is saved already; not counted as training time."""
    if checkpointer is None or step <= checkpointer.saved_step:
        return
    reporter.report(clock)
    clock.pause()
    checkpointer.save(checkpoint.capture(stepper, step, reporter.last, clock.seconds))
    clock.resume()


def _result(reporter: _Reporter, clock: _Clock, p: TrainParams, device: str) -> TrainResult:
    metrics = dict(reporter.last)
    metrics["tokens_per_second"] = p.num_training_steps * p.tokens_per_step / clock.seconds
    metrics["peak_memory_mb"] = peak_memory_mb(device)
    return TrainResult(metrics, p.num_training_steps)
