"""Training, nanoGPT-clear: build the model, optimiser and schedule, then one lean loop.

Precision: `fp32` runs as is; `bf16` autocasts to bfloat16 on any device; `fp16` autocasts to
float16 with a GradScaler on CUDA, and to bfloat16 on the CPU (CPU float16 kernels are slow and
a CPU has no loss-scaling story; bfloat16 gives the same memory saving without overflow).
Weights and optimiser state stay float32 in every case. On CUDA fp32 matrix products run as
TF32 unless ``training.tf32`` is false (:mod:`worker.precision`), AdamW is the fused kernel,
and with fp16 a step the GradScaler skipped (an inf/NaN gradient) does not advance the
learning-rate schedule either.

The loop synchronises with the device only when it reports (about once a second, before each
evaluation and at the end; :mod:`worker.reporting`): the token ids live on the device, batches
are gathered there, and per-step losses stay on the device until a report sends them to the
tracker in one batch. With ``training.compile`` the forward and backward run through
``torch.compile``; evaluation, sampling and checkpoints use the plain module (the same weights).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from registry.document.estimate import training_flops_per_token, warmup_steps
from worker import checkpoint, precision
from worker.data import Splits, eval_batches, get_batch
from worker.evaluation import causal_lm_loss, evaluate_loss
from worker.moe import RoutingMonitor
from worker.reporting import WARMUP_STEPS, Clock, OnProgress, Reporter
from worker.tracking import Tracker

log = logging.getLogger(__name__)

EVAL_BATCHES = 8  # fixed validation windows per evaluation: the same tokens every time

ShouldStop = Callable[[], bool]


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
    tf32: bool = True
    compile: bool = False
    aux_loss_alpha: float | None = None
    flops_per_token: int = 0
    #: Processes training together (`worker.distributed`); batch_size is each one's share.
    world_size: int = 1

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
            tf32=precision.tf32_wanted(doc),
            compile=bool(t.get("compile")),
            aux_loss_alpha=(doc["model"].get("moe") or {}).get("aux_loss_alpha"),
            flops_per_token=training_flops_per_token(dict(doc)),
        )

    @property
    def tokens_per_step(self) -> int:
        """Training tokens one optimiser step consumes, all processes together."""
        return self.batch_size * self.gradient_accumulation_steps * self.seq_len * self.world_size


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
    """AdamW; matrices decay, norms and biases (1-D parameters) do not. Fused (one kernel for
    all parameters, and no host sync for the GradScaler's inf check) when they are on CUDA."""
    params = [q for q in model.parameters() if q.requires_grad]
    groups = [
        {"params": [q for q in params if q.dim() >= 2], "weight_decay": p.weight_decay},
        {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0},
    ]
    on_cuda = bool(params) and all(q.is_cuda for q in params)
    return torch.optim.AdamW(groups, lr=p.learning_rate, fused=True if on_cuda else None)


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    parameters: Any,
    max_grad_norm: float,
) -> tuple[torch.Tensor, bool]:
    """Unscale, clip, step, update the scale; the schedule advances only if the optimiser
    stepped. Returns the pre-clip gradient norm and whether the step was taken.

    A GradScaler skips the optimiser step when a gradient is inf/NaN and then lowers its
    scale; comparing the scale before and after ``update()`` tells (a sync, paid only when
    the scaler is on: fp16 on CUDA). Without a scaler every step is taken.
    """
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    before = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    stepped = before is None or scaler.get_scale() >= before
    if stepped:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm.detach(), stepped


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


@dataclass(frozen=True)
class TrainResult:
    """The final value of each metric `train()` logged, and the step it stopped at."""

    metrics: dict[str, float]
    steps: int


def optimisation(
    model: Any, p: TrainParams, device: str
) -> tuple[
    torch.optim.Optimizer,
    Any,
    torch.amp.GradScaler,
    Callable[[], contextlib.AbstractContextManager[Any]],
    torch.Generator,
]:
    """What every training loop here steps with: the AdamW optimiser, its schedule, the
    gradient scaler (fp16 on CUDA only), the autocast context and the seeded generator that
    draws the batches (a checkpoint keeps its state)."""
    optimizer = build_optimizer(model, p)
    use_scaler = p.precision == "fp16" and torch.device(device).type == "cuda"
    return (
        optimizer,
        build_scheduler(optimizer, p),
        torch.amp.GradScaler("cuda", enabled=use_scaler),
        lambda: autocast(device, p.precision),
        torch.Generator().manual_seed(p.seed),
    )


class _Stepper:
    """One optimiser step: accumulate micro-batches, clip, step, schedule."""

    def __init__(self, model: Any, splits: Splits, p: TrainParams, device: str) -> None:
        self.model, self.splits, self.p, self.device = model, splits.on(device), p, device
        self.forward = torch.compile(model) if p.compile else model
        self.optimizer, self.scheduler, self.scaler, self.amp, self.generator = optimisation(
            model, p, device
        )
        self.routing = RoutingMonitor(model, p.aux_loss_alpha)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to minimise, language-model loss) of one micro-batch; the first adds the
        MoE balance loss when the document asks for one."""
        with self.routing.record(), self.amp():
            logits = self.forward(input_ids=x, use_cache=False).logits
        lm = causal_lm_loss(logits, y)
        aux = self.routing.aux_loss()
        return (lm if aux is None else lm + aux), lm

    def step(self) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Returns the learning rate used, the step's mean loss and the pre-clip grad norm."""
        lr = float(self.scheduler.get_last_lr()[0])
        total = torch.zeros((), device=self.device)
        n = self.p.gradient_accumulation_steps
        for i in range(n):
            x, y = self.batch()
            with self.accumulating(last=i == n - 1):
                loss, lm = self.loss(x, y)
                self.scaler.scale(loss / n).backward()
            total += lm.detach() / n
        total = self.mean_loss(total)
        norm, _ = optimizer_step(
            self.optimizer,
            self.scheduler,
            self.scaler,
            self.model.parameters(),
            self.p.max_grad_norm,
        )
        return lr, total, norm

    @property
    def reported_routing(self) -> RoutingMonitor | None:
        """The routing monitor when the model routes tokens (the reporter reads it)."""
        return self.routing if self.routing.active else None

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training micro-batch (a distributed rank's override takes its share)."""
        return get_batch(self.splits.train, self.p.batch_size, self.p.seq_len, self.generator)

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Around a micro-batch's forward and backward (DDP skips its all-reduce but last)."""
        return contextlib.nullcontext()

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The step's loss as reported (a distributed rank averages over the ranks)."""
        return loss

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
    make_stepper: Callable[[Any, Splits, TrainParams, str], _Stepper] | None = None,
) -> TrainResult:
    """Train `model` (on `device`) for p.num_training_steps; raises Stopped if asked. A
    `checkpointer` saves and resumes the state; `make_stepper` a rank's (worker.ranks)."""
    stepper = _prepare(model, splits, p, device, make_stepper or _Stepper)
    reporter, clock = Reporter(p, tracker, on_progress, stepper.reported_routing), Clock()
    first = resume_from(checkpointer, stepper, reporter, clock)
    try:
        for step in range(first, p.num_training_steps + 1):
            if should_stop():
                reporter.report(clock)  # keep the history up to the stop
                save_state(checkpointer, stepper, reporter, clock, step - 1)  # a warm stop
                raise Stopped(f"stopped at step {step} of {p.num_training_steps}")
            reporter.add(step, *stepper.step())
            at_eval = step % p.eval_every_steps == 0 or step == p.num_training_steps
            warmed = step == first + WARMUP_STEPS - 1 and step < p.num_training_steps
            if at_eval or warmed or reporter.due():
                reporter.report(clock)  # syncs: the clock then holds finished work only
            if warmed:
                clock.mark(step)
            if at_eval:
                _evaluate(step, stepper, tracker, reporter, clock)
            if checkpointer is not None and checkpointer.due(step, p.num_training_steps):
                save_state(checkpointer, stepper, reporter, clock, step)
    finally:
        reporter.close()
        stepper.routing.close()
    clock.pause()  # training is over: what follows is not training time
    if stepper.routing.active:
        tracker.log_artifact_text(stepper.routing.artifact(), "moe_load.json")
    return _result(reporter, clock, p, device)


def _prepare(
    model: Any, splits: Splits, p: TrainParams, device: str, make: Callable[..., _Stepper]
) -> _Stepper:
    """Check the data, set the device's matrix precision, build the optimiser and the rest."""
    splits.check(p.seq_len)
    if p.precision == "fp16" and torch.device(device).type == "cpu":
        log.warning("precision fp16 runs as bfloat16 autocast on the CPU")
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    precision.configure_tf32(device, p.tf32)
    model.train()
    return make(model, splits, p, device)


def _evaluate(
    step: int, stepper: _Stepper, tracker: Tracker, reporter: Reporter, clock: Clock
) -> None:
    clock.pause()
    val = stepper.evaluate()
    tracker.log_metrics(step, val)
    reporter.last.update(val)
    clock.resume()


def resume_from(
    checkpointer: checkpoint.Checkpointer | None,
    stepper: Any,
    reporter: Reporter,
    clock: Clock,
) -> int:
    """The first step to train: 1, or the step after the checkpoint being resumed (restored
    into a `_Stepper`-like `stepper`: model, optimizer, scheduler, scaler, generator, p)."""
    state = checkpointer.resume if checkpointer is not None else None
    if state is None:
        return 1
    checkpoint.restore(stepper, state)
    reporter.last.update(state["last"])
    clock.seconds = float(state["train_seconds"])
    reporter.bar.update(int(state["step"]))
    return int(state["step"]) + 1


def save_state(
    checkpointer: checkpoint.Checkpointer | None,
    stepper: Any,
    reporter: Reporter,
    clock: Clock,
    step: int,
) -> None:
    """Save the state after `step` unless it is saved already; not counted as training time."""
    if checkpointer is None or step <= checkpointer.saved_step:
        return
    reporter.report(clock)
    clock.pause()
    checkpointer.save(checkpoint.capture(stepper, step, reporter.last, clock.seconds))
    clock.resume()


def _result(reporter: Reporter, clock: Clock, p: TrainParams, device: str) -> TrainResult:
    """The last reported values, throughput after warm-up (and MFU on a known GPU), memory."""
    metrics = dict(reporter.last)
    metrics["tokens_per_second"] = clock.tokens_per_second(p.num_training_steps, p.tokens_per_step)
    per_device = metrics["tokens_per_second"] / p.world_size  # MFU is one device's share
    mfu = precision.mfu(p.flops_per_token, per_device, device, p.precision, p.tf32)
    if mfu is not None:
        metrics["throughput_mfu"] = mfu
    metrics["peak_memory_mb"] = peak_memory_mb(device)
    return TrainResult(metrics, p.num_training_steps)
