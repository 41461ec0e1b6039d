"""What every rank of a multi-device run does (`worker.distributed` starts them).

A rank joins the group through the TCP store rank 0 serves, trains the same loop as one
process with a :class:`DDPStepper` (its slice of the global micro-batch, DDP-averaged
gradients, the loss averaged over the ranks) and a `should_stop` that all ranks answer
together with rank 0's decision. A child rank (1 .. N-1) builds the same model from the seed,
logs nothing (a NullTracker), evaluates nothing and saves no checkpoint; resumed, it restores
the same state as rank 0 (model, optimiser, scheduler, random states). The other tasks bring
their own build and loop (a :class:`RankTask`, worker.distributed_tasks) to the same life.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

from worker import checkpoint
from worker.data import Splits, get_batch
from worker.model import build_model
from worker.reporting import OnProgress
from worker.tracking import NullTracker, Tracker
from worker.training import (
    ShouldStop,
    Stopped,
    TrainParams,
    _Stepper,
    seed_everything,
    train,
)

HOST = "127.0.0.1"
#: Longest a collective may wait: rank 0 evaluates and uploads checkpoints while the others
#: wait in the next step's all-reduce, so this bounds those too (a hung rank fails after it).
COLLECTIVE_TIMEOUT_S = 1800.0
#: Longest the children may take to start (spawn imports torch and transformers afresh).
STARTUP_TIMEOUT_S = 300.0


def backend_for(device: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


class RankTask(Protocol):
    """A task other than causal LM as every rank builds and trains it (with the rank's
    checkpointer: rank 0's saves, a child's only resumes). Pickled within the Spec."""

    def build(self, spec: Spec) -> Any:
        """The model as the seed alone makes it (DDP then copies rank 0's weights)."""
        ...

    def train(
        self,
        spec: Spec,
        rank: int,
        model: Any,
        tracker: Tracker,
        should_stop: ShouldStop,
        on_progress: OnProgress | None,
        checkpointer: checkpoint.Checkpointer | None,
    ) -> Any:
        """The task's loop with the rank's stepper (and checkpointer); its final metrics."""
        ...


@dataclass(frozen=True)
class Spec:
    """What a child rank needs, pickled to it at spawn: the causal LM's splits and resume
    state, or another task's RankTask (then `splits` is None)."""

    doc: Mapping[str, Any]
    vocab_size: int
    splits: Splits | None
    params: TrainParams
    devices: list[str]
    port: int
    resume: Mapping[str, Any] | None
    threads: int
    collective_timeout_s: float
    task: RankTask | None = None

    @property
    def world(self) -> int:
        return len(self.devices)


class DDPStepper(_Stepper):
    """A rank's step: its slice of the global micro-batch, DDP's averaged gradients, the
    loss averaged over the ranks; only rank 0 evaluates (on the unwrapped module)."""

    def __init__(self, model: Any, splits: Splits, p: TrainParams, device: str) -> None:
        super().__init__(model, splits, p, device)
        ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
        self.ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.forward = self.ddp
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        part = (self.rank, self.world)
        return get_batch(self.splits.train, self.p.batch_size, self.p.seq_len, self.generator, part)

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if last else self.ddp.no_sync()

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(loss)  # SUM: gloo has no AVG
        return loss / self.world

    def evaluate(self) -> dict[str, float]:
        return super().evaluate() if self.rank == 0 else {}


class _Follower(checkpoint.Checkpointer):
    """A child rank's checkpointer: it resumes the same state as rank 0 and never saves.

    Its `resume` must be the child's own copy: the tensors pickled to it live in memory
    shared with rank 0, and the optimiser adopts its state's tensors as they are (no copy),
    so shared moments would be updated by both ranks each step."""

    def __init__(self, resume: Mapping[str, Any] | None) -> None:
        super().__init__(NullTracker(), 1, Path(os.devnull), {}, resume)

    def due(self, step: int, total: int) -> bool:
        return False

    def save(self, state: dict[str, Any]) -> bool:
        return True


def agreed_stop(should_stop: ShouldStop, group: Any) -> ShouldStop:
    """A `should_stop` all ranks call once a step: rank 0's answer, broadcast to all."""

    def stop() -> bool:
        flag = torch.tensor([1 if should_stop() else 0])
        dist.broadcast(flag, src=0, group=group)
        return bool(flag.item())

    return stop


def join_group(spec: Spec, rank: int, store: Any) -> Any:
    """Join the default group; the group the stop flag travels in (a CPU one under NCCL)."""
    backend = backend_for(spec.devices[rank])
    if backend == "nccl":
        torch.cuda.set_device(spec.devices[rank])
    timeout = timedelta(seconds=spec.collective_timeout_s)
    dist.init_process_group(backend, store=store, rank=rank, world_size=spec.world, timeout=timeout)
    return dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else None


def train_rank(
    spec: Spec,
    rank: int,
    model: Any,
    tracker: Tracker,
    should_stop: ShouldStop,
    on_progress: OnProgress | None,
    checkpointer: checkpoint.Checkpointer | None,
    stop_group: Any,
) -> Any:
    """One rank's training loop, in a joined group: the causal LM's or `spec.task`'s."""
    model = model.to(spec.devices[rank])
    stop = agreed_stop(should_stop, stop_group)
    if spec.task is not None:
        return spec.task.train(spec, rank, model, tracker, stop, on_progress, checkpointer)
    if spec.splits is None:
        raise ValueError("a causal LM's ranks need its splits")
    return train(
        model,
        spec.splits,
        spec.params,
        spec.devices[rank],
        tracker,
        stop,
        on_progress,
        checkpointer,
        make_stepper=DDPStepper,
    )


def child_main(rank: int, spec: Spec, errors: Any) -> None:
    """A child rank's whole life: join, build the same model, train, leave the group.

    It ignores SIGTERM and SIGINT: systemd (KillMode=control-group) and a terminal's Ctrl-C
    signal the whole group, and the daemon's warm stop must reach every rank as rank 0's
    agreed stop, at a step, with a checkpoint, rather than as a dead rank."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        torch.set_num_threads(spec.threads)
        seed_everything(spec.params.seed, spec.devices[rank])
        store = dist.TCPStore(
            HOST, spec.port, spec.world, False, timeout=timedelta(seconds=STARTUP_TIMEOUT_S)
        )
        store.set(f"ready/{rank}", str(os.getpid()))
        stop_group = join_group(spec, rank, store)
        torch.manual_seed(spec.params.seed)  # the same initial weights as rank 0
        model = (
            build_model(spec.doc, spec.vocab_size) if spec.task is None else spec.task.build(spec)
        )
        tracker = NullTracker()
        train_rank(
            spec,
            rank,
            model,
            tracker,
            lambda: False,
            None,
            _Follower(copy.deepcopy(spec.resume)),
            stop_group,
        )
    except Stopped:
        pass
    except BaseException:
        errors.send(traceback.format_exc())
        raise SystemExit(1) from None
    finally:
        errors.close()
        if dist.is_initialized():
            dist.destroy_process_group()
