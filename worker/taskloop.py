"""The training loop of the tasks that are not causal language modelling (classification and
image-caption matching): a stepper's optimiser steps, reports and periodic scoring.

The stepper owns the model, data, optimiser and schedule (:class:`TaskStepper`); ``score``
measures the whole validation split. Every ``eval_every_steps`` and at the end the scores are
logged together with the task's ``baseline`` metrics (measured once, before training).

Checkpoints are the causal LM's (:mod:`worker.checkpoint`, through the same
``resume_from`` / ``save_state`` of :mod:`worker.training`): every
``training.checkpoint_every_steps`` and at a warm stop the model, optimiser, schedule, scaler
and batch generator are saved, and a later attempt resumes after that step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from worker import checkpoint
from worker.reporting import WARMUP_STEPS, Clock, OnProgress, Reporter
from worker.tracking import Tracker
from worker.training import (
    ShouldStop,
    Stopped,
    TrainParams,
    optimisation,
    optimizer_step,
    peak_memory_mb,
    resume_from,
    save_state,
)


class TaskStepper(Protocol):
    def step(self) -> tuple[float, torch.Tensor, torch.Tensor]:
        """One optimiser step: (learning rate used, mean loss, pre-clip gradient norm)."""
        ...


class MicroBatchStepper:
    """An optimiser step over ``gradient_accumulation_steps`` micro-batches: the optimiser,
    schedule, precision and gradient scaler of :mod:`worker.training`. A task says which rows
    a micro-batch holds (``rows``), their loss (``loss``) and how the split scores (``score``);
    a rank of a multi-device run (:mod:`worker.distributed_tasks`) overrides the hooks below.
    """

    def __init__(self, model: Any, p: TrainParams, device: str) -> None:
        self.model, self.p, self.device = model, p, device
        self.optimizer, self.scheduler, self.scaler, self.amp, self.generator = optimisation(
            model, p, device
        )

    def rows(self) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self) -> dict[str, float]:
        raise NotImplementedError

    def step(self) -> tuple[float, torch.Tensor, torch.Tensor]:
        lr = float(self.scheduler.get_last_lr()[0])
        total = torch.zeros((), device=self.device)
        steps = self.p.gradient_accumulation_steps
        for micro in range(steps):
            with self.accumulating(micro == steps - 1):
                loss = self.loss(self.rows().to(self.device)) / steps
                self.scaler.scale(loss).backward()
            total += loss.detach()
        params = self.model.parameters()
        norm, _ = optimizer_step(
            self.optimizer, self.scheduler, self.scaler, params, self.p.max_grad_norm
        )
        return lr, self.mean_loss(total), norm

    # What a rank of a multi-device run changes:
    def accumulating(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss


def run_task_loop(
    stepper: MicroBatchStepper,
    score: Callable[[], dict[str, float]],
    baseline: Mapping[str, float],
    p: TrainParams,
    device: str,
    tracker: Tracker,
    should_stop: ShouldStop = lambda: False,
    on_progress: OnProgress | None = None,
    checkpointer: checkpoint.Checkpointer | None = None,
) -> dict[str, float]:
    """Train for p.num_training_steps and return the final metrics (raises Stopped if asked);
    a `checkpointer` saves the state as it says and resumes from its `resume` state."""
    reporter, clock = Reporter(p, tracker, on_progress), Clock()
    first = resume_from(checkpointer, stepper, reporter, clock)
    try:
        for step in range(first, p.num_training_steps + 1):
            if should_stop():
                reporter.report(clock)
                save_state(checkpointer, stepper, reporter, clock, step - 1)  # a warm stop
                raise Stopped(f"stopped at step {step} of {p.num_training_steps}")
            reporter.add(step, *stepper.step())
            at_eval = step % p.eval_every_steps == 0 or step == p.num_training_steps
            warmed = step == first + WARMUP_STEPS - 1 and step < p.num_training_steps
            if at_eval or warmed or reporter.due():
                reporter.report(clock)
            if warmed:
                clock.mark(step)
            if at_eval:
                _score(step, score, baseline, tracker, reporter, clock)
            if checkpointer is not None and checkpointer.due(step, p.num_training_steps):
                save_state(checkpointer, stepper, reporter, clock, step)
    finally:
        reporter.close()
    clock.pause()
    metrics = dict(reporter.last)
    metrics["tokens_per_second"] = clock.tokens_per_second(p.num_training_steps, p.tokens_per_step)
    metrics["peak_memory_mb"] = peak_memory_mb(device)
    return metrics


def _score(
    step: int,
    score: Callable[[], dict[str, float]],
    baseline: Mapping[str, float],
    tracker: Tracker,
    reporter: Reporter,
    clock: Clock,
) -> None:
    clock.pause()
    scored = score() | dict(baseline)
    tracker.log_metrics(step, scored)
    reporter.last.update(scored)
    clock.resume()
