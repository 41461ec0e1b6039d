"""The training loop's clock and reporter: per-step values stay on the device until a report.

A report (about once a second, before each evaluation, at a checkpoint and at the end) reads
every pending step's loss and gradient norm in one sync and hands them to the tracker; the MoE
routing counts (:class:`worker.moe.RoutingMonitor`) are read at the same point.

**Throughput after warm-up.** The first :data:`WARMUP_STEPS` optimiser steps of an attempt pay
for CUDA context and kernel selection, the allocator's first growth and, with
``training.compile``, the compilation; ``tokens_per_second`` counts the steps after them
(the clock is read after a sync at the end of the warm-up). A run, or a resumed attempt, with
no more steps than that reports the whole-run figure instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from tqdm import tqdm

from worker.tracking import Tracker

PROGRESS_EVERY_S = 1.0
#: Optimiser steps an attempt trains before throughput is measured.
WARMUP_STEPS = 3

OnProgress = Callable[[dict[str, Any]], None]


class _Params(Protocol):
    @property
    def num_training_steps(self) -> int: ...

    @property
    def tokens_per_step(self) -> int: ...


class _Routing(Protocol):
    def report(self, step: int) -> dict[str, float]: ...


@dataclass
class Clock:
    """Training wall time, excluding evaluation; `mark` starts the throughput window."""

    seconds: float = 0.0
    since: float = field(default_factory=time.perf_counter)
    marked: tuple[int, float] | None = None
    running: bool = True

    def pause(self) -> None:
        if self.running:
            self.seconds += time.perf_counter() - self.since
            self.running = False

    def resume(self) -> None:
        self.since, self.running = time.perf_counter(), True

    def now(self) -> float:
        return self.seconds + (time.perf_counter() - self.since if self.running else 0.0)

    def mark(self, step: int) -> None:
        """Training time after `step` (finished: the caller has synced) is throughput time."""
        self.marked = (step, self.now())

    def tokens_per_second(self, step: int, tokens_per_step: int) -> float:
        """Tokens/s since the mark; before it, over all training so far."""
        if self.marked is not None and step > self.marked[0]:
            done, at = self.marked
            return (step - done) * tokens_per_step / max(self.now() - at, 1e-9)
        return step * tokens_per_step / max(self.now(), 1e-9)


class Reporter:
    """Holds per-step values on the device; reports them in one sync at most once a second."""

    def __init__(
        self,
        p: _Params,
        tracker: Tracker,
        on_progress: OnProgress | None,
        routing: _Routing | None = None,
    ) -> None:
        self.p, self.tracker, self.on_progress, self.routing = p, tracker, on_progress, routing
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

    def report(self, clock: Clock) -> None:
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
            if self.routing is not None:
                routed = self.routing.report(step)
                if routed:
                    self.tracker.log_metrics(step, routed)
            self.last.update(train_loss=values[-1][0], learning_rate=self.pending[-1][1])
            self.last["tokens_per_second"] = clock.tokens_per_second(step, self.p.tokens_per_step)
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
