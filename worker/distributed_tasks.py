"""Several devices for ``task: classification`` and ``task: multimodal_matching`` (CONTRACT 5.4).

The ranks live the causal LM's life (:mod:`worker.distributed` spawns them, serves the
rendezvous, names a dead rank and reaps every child; :mod:`worker.ranks` joins the group and
broadcasts rank 0's stop): only the model each builds and the loop each trains differ, and
those travel to the children as a :class:`worker.ranks.RankTask`. Rank 0 (the daemon's
process) alone logs, reports progress and scores; the children score nothing.

**Classification: the one-process curve.** Every rank draws the *global* micro-batch
(``b * N`` rows, with replacement) from the same seeded generator and keeps its slice
``[r*b, (r+1)*b)``; the loss is a mean over rows, so DDP's averaged gradient is the
one-process gradient with ``b * N`` rows, up to the order of float sums.

**Matching: the global contrastive batch.** The loss couples every image with every caption
of the batch, so a slice's own ``b x b`` loss would not be the one-process loss. Every rank
draws the global ``b * N`` distinct pairs, encodes its slice's images and captions, gathers
every rank's features (:class:`_Gather`, gradients flowing back to their rank) and scores
the whole ``bN x bN`` matrix; every rank so computes the same global loss, whose gradient
reaches each encoder's features ``N`` times (once from each rank) and the head once on each
rank: DDP's mean makes both the one-process gradient with ``b * N`` pairs. The encoders'
work is split across the ranks; the head's ``(bN)^2`` pairs are scored on every rank.

**Fine-tunes.** from_run's weights are loaded into rank 0's model only: constructing DDP
broadcasts rank 0's parameters and buffers to every rank, so the children train from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from worker import checkpoint, classification, distributed, matching, ranks
from worker.reporting import OnProgress
from worker.tracking import Tracker
from worker.training import ShouldStop, TrainParams


class _Context(Protocol):
    """What these read of a task runner's context (worker.task_runs)."""

    doc: Mapping[str, Any]
    tracker: Tracker
    device: str
    provenance: dict[str, Any]

    @property
    def should_stop(self) -> ShouldStop: ...
    @property
    def on_progress(self) -> OnProgress: ...


def train(
    ctx: _Context,
    model: Any,
    data: Any,
    vocab_size: int,
    params: TrainParams,
    checkpointer: checkpoint.Checkpointer | None = None,
) -> Any:
    """The task's loop on ``resources.gpus`` ranks (the provenance then names ``world_size``
    and ``backend``), or in this process alone for one device; the final metrics. A resumed
    attempt's state (``checkpointer.resume``) reaches every rank; rank 0 alone saves."""
    task: ranks.RankTask
    if isinstance(data, classification.Labelled):
        task = ClassifierTask(data, vocab_size)
    else:
        task = MatcherTask(data, vocab_size)
    world = distributed.world_size(ctx.doc)
    if world == 1:
        loop = (ctx.tracker, ctx.should_stop, ctx.on_progress, checkpointer)
        return task.run(params, ctx.device, model, *loop)
    distributed.refuse_unsupported(ctx.doc)
    ctx.provenance.update(world_size=world, backend=ranks.backend_for(ctx.device))
    spec = ranks.Spec(
        doc=ctx.doc,
        vocab_size=vocab_size,
        splits=None,
        params=dataclasses.replace(params, world_size=world),
        devices=distributed.rank_devices(ctx.device, world),
        port=0,
        resume=checkpointer.resume if checkpointer is not None else None,
        threads=0,
        collective_timeout_s=ranks.COLLECTIVE_TIMEOUT_S,
        task=task,
    )
    loop = (ctx.tracker, ctx.should_stop, ctx.on_progress, checkpointer)
    return distributed.launch(spec, model, *loop)


@dataclass(frozen=True)
class ClassifierTask:
    """A classification run's ranks: the data and the sizes to build the same classifier."""

    data: classification.Labelled
    vocab_size: int

    def build(self, spec: ranks.Spec) -> Any:
        from worker.model import build_classifier

        return build_classifier(spec.doc, self.vocab_size, len(self.data.labels))

    def run(self, p: TrainParams, device: str, model: Any, *loop: Any) -> dict[str, float]:
        """The loop; ``loop`` is (tracker, should_stop, on_progress, checkpointer)."""
        make = _ClassifierRank if p.world_size > 1 else classification.ClassifierStepper
        tracker, should_stop, on_progress, saver = loop
        return classification.train_classifier(
            model, self.data, p, device, tracker, should_stop, on_progress, make, saver
        )

    def train(self, spec: ranks.Spec, rank: int, model: Any, *loop: Any) -> dict[str, float]:
        return self.run(spec.params, spec.devices[rank], model, *loop)


@dataclass(frozen=True)
class MatcherTask:
    """A matching run's ranks: the pairs and the vocabulary to build the same model."""

    data: matching.Pairs
    vocab_size: int

    def build(self, spec: ranks.Spec) -> Any:
        from worker.matching_model import build_matcher

        return build_matcher(spec.doc, self.vocab_size)

    def run(self, p: TrainParams, device: str, model: Any, *loop: Any) -> dict[str, float]:
        """The loop; ``loop`` is (tracker, should_stop, on_progress, checkpointer)."""
        make = _MatcherRank if p.world_size > 1 else matching.MatcherStepper
        tracker, should_stop, on_progress, saver = loop
        return matching.train_matcher(
            model, self.data, p, device, tracker, should_stop, on_progress, make, saver
        )

    def train(self, spec: ranks.Spec, rank: int, model: Any, *loop: Any) -> dict[str, float]:
        return self.run(spec.params, spec.devices[rank], model, *loop)


def _ddp(module: nn.Module, device: str) -> Any:
    """``module`` under DDP (which broadcasts rank 0's parameters and buffers here)."""
    ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


class _Ranked:
    """What a rank's stepper of either task adds: no_sync while accumulating, the loss
    averaged over the ranks for the report."""

    ddp: Any
    world: int

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if last else self.ddp.no_sync()

    def mean_loss(self, loss: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(loss)  # SUM: gloo has no AVG
        return loss / self.world


class _ClassifierRank(_Ranked, classification.ClassifierStepper):
    """A classification rank: its slice of the global micro-batch; only rank 0 scores."""

    def __init__(self, model: Any, data: classification.Labelled, p: TrainParams, device: str):
        super().__init__(model, data, p, device)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.ddp = self.forward = _ddp(model, device)

    def rows(self) -> torch.Tensor:
        b = self.p.batch_size
        every = torch.randint(len(self.train.labels), (b * self.world,), generator=self.generator)
        return every[self.rank * b : (self.rank + 1) * b]

    def score(self) -> dict[str, float]:
        return super().score() if self.rank == 0 else {}


class _Gather(torch.autograd.Function):
    """Every rank's ``[n, d]`` features, in rank order; backward hands each rank the sum over
    the ranks of the gradient of its own rows (an all-reduce: gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(features) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, features.contiguous())
        ctx.rows = slice(dist.get_rank() * len(features), (dist.get_rank() + 1) * len(features))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rows]


class _GlobalLoss(nn.Module):
    """What DDP wraps for matching: the contrastive loss of the global batch from this rank's
    slice of images and captions and everyone's gathered features."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: torch.Tensor | None, ids: torch.Tensor, groups: torch.Tensor
    ) -> torch.Tensor:
        image, text = self.model.features(images, ids)
        every_image = None if image is None else _Gather.apply(image)
        scores = self.model.scores_of(every_image, _Gather.apply(text), len(groups))
        return matching.contrastive_loss(scores.float(), groups)


class _MatcherRank(_Ranked, matching.MatcherStepper):
    """A matching rank: the global pairs drawn, its slice encoded, the global loss."""

    def __init__(self, model: Any, data: matching.Pairs, p: TrainParams, device: str) -> None:
        super().__init__(model, data, p, device)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.ddp = _ddp(_GlobalLoss(model), device)

    def rows(self) -> torch.Tensor:
        """``b * N`` distinct pairs (fewer, a multiple of N, if the split is smaller)."""
        size = min(self.p.batch_size * self.world, len(self.train) // self.world * self.world)
        return torch.randperm(len(self.train), generator=self.generator)[:size]

    def loss(self, rows: torch.Tensor) -> torch.Tensor:
        share = len(rows) // self.world
        mine = self.train.take(rows[self.rank * share : (self.rank + 1) * share])
        with self.amp():
            loss: torch.Tensor = self.ddp(mine.images, mine.ids, self.train.groups[rows])
        return loss

    def score(self) -> dict[str, float]:
        return super().score() if self.rank == 0 else {}
