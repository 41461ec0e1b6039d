"""Several devices per run (CONTRACT 5.4, 5.7): `resources.gpus` > 1 trains under DDP.

The daemon's own process is rank 0: it keeps the MLflow run, the heartbeats and the stop
decision, and alone logs metrics, reports progress, evaluates and stores checkpoints. Ranks
1 .. N-1 are child processes (torch.multiprocessing, spawn) that receive by pickling what they
need: the document, the token ids, the hyperparameters, their device, the rendezvous. Gloo on
the CPU (every rank on the CPU: CONTRACT 5.7's "that many processes"); NCCL on CUDA, rank r on
`cuda:r` of the daemon's visible GPUs.

**The same curve as one process.** Every rank draws the whole micro-batch (`batch * world`
starts) from the same seeded generator and trains on its slice (`data.get_batch`'s `part`);
DDP averages the gradients, so a step is the one-process step with `batch * world`, up to
the order of float sums. The reported loss is averaged over the ranks (one all-reduce).
Classification and matching start the same ranks through :func:`launch` with their own build
and loop (:mod:`worker.distributed_tasks`).

**Stop, fail, clean up.** Each step rank 0 broadcasts its `should_stop` answer, so all ranks
stop at the same step. Rank 0 waits for the children to reach the rendezvous while watching
that they live, trains with a timeout on every collective, and on any error names the rank
that died or failed (its exit code, or its traceback's last line). Whatever happens the group
is destroyed and every child joined or killed: a daemon runs many runs in one process.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from worker import checkpoint, ranks
from worker.data import Splits
from worker.reporting import OnProgress
from worker.tracking import Tracker
from worker.training import ShouldStop, Stopped, TrainParams, TrainResult, train

log = logging.getLogger(__name__)

#: How long a child gets to exit on its own after the run before it is terminated.
JOIN_TIMEOUT_S = 10.0


class DistributedError(RuntimeError):
    """A rank of a multi-device run died or failed; the message names the rank."""


def world_size(doc: Mapping[str, Any]) -> int:
    """How many processes train the run: resources.gpus."""
    return int((doc.get("resources") or {}).get("gpus") or 1)


def refuse_unsupported(doc: Mapping[str, Any]) -> None:
    """Raise NotImplementedError naming the field a multi-device run cannot honour yet."""
    if world_size(doc) == 1:
        return
    if doc["training"].get("compile"):
        raise NotImplementedError(
            "training.compile: not built for resources.gpus > 1 (DDP); set it false"
        )


def rank_devices(device: str, world: int) -> list[str]:
    """Rank r's device: `cuda:r` (of the daemon's visible GPUs), or the CPU for every rank."""
    if torch.device(device).type != "cuda":
        return ["cpu"] * world
    if torch.cuda.device_count() < world:
        raise DistributedError(
            f"resources.gpus: {world} devices, but this worker sees "
            f"{torch.cuda.device_count()} GPU(s)"
        )
    return [f"cuda:{r}" for r in range(world)]


def trainer(doc: Mapping[str, Any], vocab_size: int, provenance: dict[str, Any]) -> Any:
    """`training.train`, or for resources.gpus > 1 the same call run on that many ranks
    (the provenance then names `world_size` and `backend`)."""
    world = world_size(doc)
    if world == 1:
        return train
    refuse_unsupported(doc)

    def run(model: Any, splits: Splits, params: TrainParams, device: str, *rest: Any) -> Any:
        provenance.update(world_size=world, backend=ranks.backend_for(device))
        return train_distributed(model, splits, params, device, *rest, doc=doc, vocab=vocab_size)

    return run


def train_distributed(
    model: Any,
    splits: Splits,
    params: TrainParams,
    device: str,
    tracker: Tracker,
    should_stop: ShouldStop,
    on_progress: OnProgress | None,
    checkpointer: checkpoint.Checkpointer | None,
    *,
    doc: Mapping[str, Any],
    vocab: int,
) -> TrainResult:
    """Train as rank 0 of `resources.gpus` ranks, the others spawned here; see the module."""
    world = world_size(doc)
    spec = ranks.Spec(
        doc=doc,
        vocab_size=vocab,
        splits=splits,
        params=dataclasses.replace(params, world_size=world),
        devices=rank_devices(device, world),
        port=0,
        resume=checkpointer.resume if checkpointer is not None else None,
        threads=0,
        collective_timeout_s=ranks.COLLECTIVE_TIMEOUT_S,
    )
    result: TrainResult = launch(spec, model, tracker, should_stop, on_progress, checkpointer)
    return result


def launch(
    spec: ranks.Spec,
    model: Any,
    tracker: Tracker,
    should_stop: ShouldStop,
    on_progress: OnProgress | None,
    checkpointer: checkpoint.Checkpointer | None,
) -> Any:
    """Serve the rendezvous, start ranks 1 .. N-1 of `spec` (its port and threads set here),
    train as rank 0 and return what rank 0's loop returned; every child joined or killed."""
    backend = ranks.backend_for(spec.devices[0])
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # every rank is on this machine
    timeout = timedelta(seconds=ranks.STARTUP_TIMEOUT_S)
    world = spec.world
    store = dist.TCPStore(ranks.HOST, 0, world, True, timeout=timeout, wait_for_workers=False)
    threads = torch.get_num_threads()
    shared = max(1, threads // world) if backend == "gloo" else threads  # CPUs shared
    spec = dataclasses.replace(spec, port=store.port, threads=shared)
    tracker.set_tags({"distributed.world_size": str(world), "distributed.backend": backend})
    try:
        with _Ranks(spec) as children:
            return _lead(
                spec, children, store, model, tracker, should_stop, on_progress, checkpointer
            )
    finally:
        torch.set_num_threads(threads)


def _lead(
    spec: ranks.Spec,
    children: _Ranks,
    store: Any,
    model: Any,
    tracker: Tracker,
    should_stop: ShouldStop,
    on_progress: OnProgress | None,
    checkpointer: checkpoint.Checkpointer | None,
) -> Any:
    """Rank 0's part once the children are started: rendezvous, train, leave the group; an
    error a child caused is reported as that child's failure."""
    try:
        children.wait_ready(store, should_stop)
        stop_group = ranks.join_group(spec, 0, store)
        torch.set_num_threads(spec.threads)
        args = (model, tracker, should_stop, on_progress, checkpointer, stop_group)
        return ranks.train_rank(spec, 0, *args)
    except Stopped:
        raise
    except Exception as exc:
        failure = children.explain(exc)
        if failure is exc:
            raise
        raise failure from exc
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class _Ranks:
    """The child ranks 1 .. N-1 of one run: started on entry, joined or killed on exit."""

    def __init__(self, spec: ranks.Spec) -> None:
        self.spec = spec
        self.mp = torch.multiprocessing.get_context("spawn")
        self.procs: dict[int, Any] = {}
        self.errors: dict[int, Any] = {}  # rank -> the read end of its pipe for a traceback

    def __enter__(self) -> _Ranks:
        for rank in range(1, self.spec.world):
            self.errors[rank], writer = self.mp.Pipe(duplex=False)
            proc = self.mp.Process(
                target=ranks.child_main, args=(rank, self.spec, writer), daemon=True
            )
            proc.start()
            writer.close()  # the child holds its own copy
            self.procs[rank] = proc
        return self

    def __exit__(self, *_: Any) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT_S  # a child leaves soon after rank 0
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        for rank, proc in self.procs.items():
            if proc.is_alive():  # stuck: it ignores SIGTERM (worker.ranks.child_main)
                log.warning("rank %d (pid %s) still running: killing it", rank, proc.pid)
                proc.kill()
                proc.join()
        for reader in self.errors.values():
            reader.close()

    def wait_ready(self, store: Any, should_stop: ShouldStop) -> None:
        """Until every child reached the rendezvous; fail naming a child that died first."""
        keys = [f"ready/{rank}" for rank in self.procs]
        deadline = time.monotonic() + ranks.STARTUP_TIMEOUT_S
        while not store.check(keys):
            dead = self.failed()
            if dead:
                raise DistributedError(dead)
            if should_stop():
                raise Stopped("stopped while the ranks were starting")
            if time.monotonic() > deadline:
                raise DistributedError(
                    f"the ranks did not start within {ranks.STARTUP_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.05)

    def failed(self) -> str | None:
        """What the first rank that failed or died said, or None while all live."""
        for rank, proc in self.procs.items():
            text = _posted(self.errors[rank])
            if text:
                log.error("rank %d failed:\n%s", rank, text)
                return f"rank {rank} of {self.spec.world} failed: {text.strip().splitlines()[-1]}"
            code = proc.exitcode
            if code is not None and code != 0:
                why = f" ({signal.Signals(-code).name})" if code < 0 else ""
                who = f"rank {rank} of {self.spec.world} (pid {proc.pid})"
                return f"{who} died with exit code {code}{why}"
        return None

    def explain(self, exc: Exception) -> Exception:
        """`exc` as rank 0 saw it, or the failure of the child that caused it."""
        if isinstance(exc, DistributedError):
            return exc
        deadline = time.monotonic() + 5.0  # a dead peer's exit code may lag its closed socket
        while time.monotonic() < deadline:
            dead = self.failed()
            if dead:
                return DistributedError(f"{dead} (rank 0: {exc})")
            if not any(proc.is_alive() for proc in self.procs.values()):
                break
            time.sleep(0.05)
        return exc


def _posted(reader: Any) -> str | None:
    """The traceback a child sent, if it sent one (never blocks)."""
    try:
        return str(reader.recv()) if reader.poll() else None
    except (EOFError, OSError):  # closed without a message, or already read
        return None
