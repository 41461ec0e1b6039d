"""``task: multimodal_matching``: train and score an image-caption matching model.

The pairs are :mod:`worker.imagecaptions`' (``builtin:shapes`` or a captions folder), split by
``training.seed``; images are resized to ``multimodal.image_size``, and when the document
builds no visual encoder (visual weight 0) no image is read at all. Captions are tokenised
like classification texts (the run's tokenizer, ``data.seq_len`` tokens, right padding).
Captions with the same text form one group: any image of the group is a right answer for them.

**Training.** Each micro-batch draws ``per_device_train_batch_size`` distinct train pairs
(seeded), scores every image against every caption of the batch (:mod:`worker.matching_model`)
and minimises the symmetric contrastive loss: the mean of the cross-entropies of each image
over the captions and of each caption over the images, with the probability of the right
answer spread evenly over the pairs of its group.

**Scores** (the whole validation split, every ``eval_every_steps`` and at the end):
``val_retrieval_at_1`` is caption-to-image retrieval: for each caption, whether the best-scored
image is one of its group; when several images tie for the best score, the caption counts the
share of them that are right (what a random pick among them would get on average).
``baseline_retrieval_at_1`` is chance on the same split: the mean over captions of their group's
share of the images. ``val_image_to_text_at_1`` is the same the other way. ``val_accuracy``:
each image's own caption against one other-group caption drawn by the seed; right when the own
one scores higher (a tie counts a half); chance is 0.5 (``baseline_accuracy``). ``val_loss`` is
the contrastive loss over the whole split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from registry.document.visual import has_visual_encoder, visual_sizes
from worker import imagecaptions
from worker.checkpoint import Checkpointer
from worker.classification import encode_texts
from worker.reporting import OnProgress
from worker.taskloop import MicroBatchStepper, run_task_loop
from worker.tokenizer import Tokenizer, build_tokenizer
from worker.tracking import Tracker
from worker.training import (
    ShouldStop,
    TrainParams,
)


@dataclass(frozen=True)
class Split:
    """One split: images (None without a visual encoder), caption ids and caption groups."""

    images: torch.Tensor | None
    ids: torch.Tensor
    groups: torch.Tensor

    def __len__(self) -> int:
        return len(self.groups)

    def to(self, device: str) -> Split:
        images = None if self.images is None else self.images.to(device)
        return Split(images, self.ids.to(device), self.groups.to(device))

    def take(self, rows: torch.Tensor) -> Split:
        return Split(
            None if self.images is None else self.images[rows], self.ids[rows], self.groups[rows]
        )


@dataclass(frozen=True)
class Pairs:
    """A matching dataset as the run trains on it."""

    train: Split
    validation: Split
    tokenizer: Tokenizer


def load(
    doc: Mapping[str, Any],
    data_root: str | Path,
    vocab_size: int,
    tokenizer: Tokenizer | None = None,
) -> Pairs:
    """Load and split the pairs (images only if a visual encoder reads them), build the
    tokenizer on the train captions (unless given) and encode both splits."""
    plain, d = dict(doc), doc["data"]
    train, val = imagecaptions.load_image_captions(
        d["dataset"],
        int(doc["training"]["seed"]),
        float(d["validation_fraction"]),
        visual_sizes(plain)["image_size"],
        data_root,
        with_images=has_visual_encoder(plain),
    )
    if tokenizer is None:
        tokenizer = build_tokenizer(d["tokenizer"], "\n".join(train.captions).encode(), vocab_size)
    names = {c: i for i, c in enumerate(dict.fromkeys(train.captions + val.captions))}
    seq_len = int(d["seq_len"])

    def split(pairs: imagecaptions.Pairs) -> Split:
        groups = torch.tensor([names[c] for c in pairs.captions], dtype=torch.int64)
        return Split(pairs.images, encode_texts(pairs.captions, tokenizer, seq_len), groups)

    return Pairs(split(train), split(val), tokenizer)


def contrastive_loss(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of a square ``[images, captions]`` score matrix."""
    same = (groups[:, None] == groups[None, :]).float()
    to_text = -(F.log_softmax(scores, dim=1) * same / same.sum(1, keepdim=True)).sum(1)
    to_image = -(F.log_softmax(scores, dim=0) * same / same.sum(0, keepdim=True)).sum(0)
    return (to_text.mean() + to_image.mean()) / 2


def retrieval_at_1(scores: torch.Tensor, same: torch.Tensor) -> float:
    """Mean over rows of the right share among the columns tied for the best score."""
    top = scores == scores.max(dim=1, keepdim=True).values
    return float(((top & same).sum(1).float() / top.sum(1).float()).mean())


def chance_at_1(groups: torch.Tensor) -> float:
    """What a random pick scores: the mean over captions of their group's share of images."""
    same = groups[:, None] == groups[None, :]
    return float(same.float().mean(dim=1).mean())


def pair_accuracy(scores: torch.Tensor, groups: torch.Tensor, seed: int) -> float:
    """Own caption against one other-group caption per image (ties a half); chance 0.5."""
    n, gen = len(groups), torch.Generator().manual_seed(seed)
    others = []
    for row in range(n):
        pool = (groups.cpu() != groups[row].cpu()).nonzero().flatten()
        pick = pool[torch.randint(len(pool), (1,), generator=gen)] if len(pool) else row
        others.append(int(pick))
    own = scores.diagonal()
    other = scores[torch.arange(n, device=scores.device), torch.tensor(others).to(scores.device)]
    return float(((own > other).float() + 0.5 * (own == other).float()).mean())


@torch.no_grad()
def score_matrix(model: Any, data: Split, batch_size: int, amp: Any) -> torch.Tensor:
    """``[images, captions]`` scores of the whole split, in chunks of ``batch_size`` images."""
    was_training = model.training
    model.eval()
    rows = []
    for start in range(0, len(data), batch_size):
        chunk = data.take(torch.arange(start, min(start + batch_size, len(data))))
        with amp():
            rows.append(model.scores(chunk.images, data.ids, len(chunk)).float())
    model.train(was_training)
    return torch.cat(rows)


def evaluate(model: Any, data: Split, batch_size: int, amp: Any, seed: int) -> dict[str, float]:
    """val_loss, val_accuracy, val_retrieval_at_1 and val_image_to_text_at_1 of ``data``."""
    scores = score_matrix(model, data, batch_size, amp)
    same = data.groups[:, None] == data.groups[None, :]
    return {
        "val_loss": float(contrastive_loss(scores, data.groups)),
        "val_accuracy": pair_accuracy(scores, data.groups, seed),
        "val_retrieval_at_1": retrieval_at_1(scores.T, same),
        "val_image_to_text_at_1": retrieval_at_1(scores, same),
    }


class MatcherStepper(MicroBatchStepper):
    """One optimiser step over accumulated micro-batches of distinct train pairs."""

    def __init__(self, model: Any, data: Pairs, p: TrainParams, device: str) -> None:
        super().__init__(model, p, device)
        self.train, self.validation = data.train.to(device), data.validation.to(device)

    def rows(self) -> torch.Tensor:
        """A micro-batch's rows: distinct pairs drawn by the seeded generator."""
        size = min(self.p.batch_size, len(self.train))
        return torch.randperm(len(self.train), generator=self.generator)[:size]

    def loss(self, rows: torch.Tensor) -> torch.Tensor:
        """The contrastive loss of the micro-batch ``rows``."""
        batch = self.train.take(rows)
        with self.amp():
            scores = self.model.scores(batch.images, batch.ids, len(rows))
        return contrastive_loss(scores.float(), batch.groups)

    def score(self) -> dict[str, float]:
        return evaluate(self.model, self.validation, self.p.eval_batch_size, self.amp, self.p.seed)


def train_matcher(
    model: Any,
    data: Pairs,
    p: TrainParams,
    device: str,
    tracker: Tracker,
    should_stop: ShouldStop = lambda: False,
    on_progress: OnProgress | None = None,
    make_stepper: Callable[[Any, Pairs, TrainParams, str], MatcherStepper] = MatcherStepper,
    checkpointer: Checkpointer | None = None,
) -> dict[str, float]:
    """Train for p.num_training_steps and return the final metrics (raises Stopped if asked);
    `make_stepper` a rank's (worker.distributed_tasks), `checkpointer` saves and resumes."""
    model.train()
    stepper = make_stepper(model, data, p, device)
    baseline = {
        "baseline_retrieval_at_1": chance_at_1(stepper.validation.groups),
        "baseline_accuracy": 0.5,
    }
    loop = (tracker, should_stop, on_progress, checkpointer)
    return run_task_loop(stepper, stepper.score, baseline, p, device, *loop)
