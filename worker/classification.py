"""``task: classification``: a sequence classifier trained on labelled text, end to end.

The data are :mod:`worker.textlabels`' (``builtin:stdlib-docs`` or a JSONL file), split by
``training.seed`` within each label. Each text is tokenised with the run's tokenizer
(``data.tokenizer``; a BPE is trained on the train split's texts), cut to ``data.seq_len``
tokens and padded on the right with the pad id (0), which the classifier skips: it reads the
last token that is not padding. The model is :func:`worker.model.build_classifier`.

Training reuses :mod:`worker.training`'s optimiser, schedule, precision and gradient scaler
and :mod:`worker.reporting`'s reporter: each optimiser step draws
``gradient_accumulation_steps`` micro-batches of ``per_device_train_batch_size`` train
examples (seeded, with replacement), minimises their mean cross-entropy on the labels, and
logs ``train_loss``, ``learning_rate`` and ``grad_norm`` per step. Every ``eval_every_steps``
and at the end the whole validation split is scored: ``val_loss``, ``val_accuracy``,
``val_macro_f1`` (the unweighted mean over labels of F1, a label never predicted nor present
counting 0) and ``baseline_accuracy`` (always answering the train split's most frequent label,
on the same validation split). The loop (and its checkpoints) is :mod:`worker.taskloop`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from worker import textlabels
from worker.checkpoint import Checkpointer
from worker.reporting import OnProgress
from worker.taskloop import MicroBatchStepper, run_task_loop
from worker.tokenizer import PAD_ID, Tokenizer, build_tokenizer
from worker.tracking import Tracker
from worker.training import (
    ShouldStop,
    TrainParams,
)


@dataclass(frozen=True)
class Encoded:
    """Token ids (rows padded with PAD_ID to seq_len) and label indices of one split."""

    ids: torch.Tensor
    labels: torch.Tensor

    def to(self, device: str) -> Encoded:
        return Encoded(self.ids.to(device), self.labels.to(device))


@dataclass(frozen=True)
class Labelled:
    """A classification dataset as the run trains on it."""

    train: Encoded
    validation: Encoded
    labels: list[str]
    baseline_accuracy: float
    tokenizer: Tokenizer


def encode_texts(texts: list[str], tokenizer: Tokenizer, seq_len: int) -> torch.Tensor:
    """Each text's first ``seq_len`` tokens, padded on the right; an empty encoding keeps one
    pad (the classifier then reads position 0)."""
    ids = torch.full((len(texts), seq_len), PAD_ID, dtype=torch.int64)
    for row, text in enumerate(texts):
        tokens = tokenizer.encode(text)[:seq_len]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
    return ids


def encode(examples: list[textlabels.Example], tokenizer: Tokenizer, seq_len: int) -> Encoded:
    """The examples' texts (:func:`encode_texts`) and label indices."""
    labels = torch.tensor([e.label for e in examples], dtype=torch.int64)
    return Encoded(encode_texts([e.text for e in examples], tokenizer, seq_len), labels)


def load(
    doc: Mapping[str, Any],
    data_root: str | Path,
    vocab_size: int,
    tokenizer: Tokenizer | None = None,
) -> Labelled:
    """Load, split, build the tokenizer on the train texts (unless given: a fine-tune or an
    evaluate run reads with its weights' own) and encode both splits."""
    d = doc["data"]
    train, val, labels = textlabels.load_labelled_text(
        d["dataset"], int(doc["training"]["seed"]), float(d["validation_fraction"]), data_root
    )
    if tokenizer is None:
        text = "\n".join(e.text for e in train).encode("utf-8")
        tokenizer = build_tokenizer(d["tokenizer"], text, vocab_size)
    seq_len = int(d["seq_len"])
    return Labelled(
        encode(train, tokenizer, seq_len),
        encode(val, tokenizer, seq_len),
        labels,
        textlabels.majority_baseline(train, val),
        tokenizer,
    )


def macro_f1(predicted: torch.Tensor, truth: torch.Tensor, num_labels: int) -> float:
    """Unweighted mean over all labels of 2TP / (2TP + FP + FN); 0 for a label with none."""
    scores = []
    for label in range(num_labels):
        tp = int(((predicted == label) & (truth == label)).sum())
        wrong = int(((predicted == label) != (truth == label)).sum())
        scores.append(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
    return sum(scores) / num_labels


@torch.no_grad()
def evaluate(model: Any, data: Encoded, batch_size: int, amp: Any) -> dict[str, float]:
    """val_loss, val_accuracy and val_macro_f1 over the whole of ``data``."""
    was_training = model.training
    model.eval()
    logits = []
    for start in range(0, len(data.labels), batch_size):
        ids = data.ids[start : start + batch_size]
        with amp():
            out = model(input_ids=ids, attention_mask=(ids != PAD_ID).long(), use_cache=False)
        logits.append(out.logits.float())
    model.train(was_training)
    joined = torch.cat(logits)
    predicted = joined.argmax(dim=-1)
    return {
        "val_loss": float(F.cross_entropy(joined, data.labels)),
        "val_accuracy": float((predicted == data.labels).float().mean()),
        "val_macro_f1": macro_f1(predicted.cpu(), data.labels.cpu(), model.config.num_labels),
    }


class ClassifierStepper(MicroBatchStepper):
    """One optimiser step over accumulated micro-batches of train examples."""

    def __init__(self, model: Any, data: Labelled, p: TrainParams, device: str) -> None:
        super().__init__(model, p, device)
        self.train, self.validation = data.train.to(device), data.validation.to(device)
        self.forward: Any = model  # what computes the loss (a rank's DDP wrapper)

    def rows(self) -> torch.Tensor:
        """A micro-batch's rows, drawn with replacement by the seeded generator."""
        return torch.randint(len(self.train.labels), (self.p.batch_size,), generator=self.generator)

    def loss(self, rows: torch.Tensor) -> torch.Tensor:
        ids = self.train.ids[rows]
        with self.amp():
            out = self.forward(
                input_ids=ids, attention_mask=(ids != PAD_ID).long(), use_cache=False
            )
        return F.cross_entropy(out.logits.float(), self.train.labels[rows])

    def score(self) -> dict[str, float]:
        return evaluate(self.model, self.validation, self.p.eval_batch_size, self.amp)


def train_classifier(
    model: Any,
    data: Labelled,
    p: TrainParams,
    device: str,
    tracker: Tracker,
    should_stop: ShouldStop = lambda: False,
    on_progress: OnProgress | None = None,
    make_stepper: Callable[
        [Any, Labelled, TrainParams, str], ClassifierStepper
    ] = ClassifierStepper,
    checkpointer: Checkpointer | None = None,
) -> dict[str, float]:
    """Train for p.num_training_steps and return the final metrics (raises Stopped if asked);
    `make_stepper` a rank's (worker.distributed_tasks), `checkpointer` saves and resumes."""
    model.train()
    stepper = make_stepper(model, data, p, device)
    baseline = {"baseline_accuracy": data.baseline_accuracy}
    loop = (tracker, should_stop, on_progress, checkpointer)
    return run_task_loop(stepper, stepper.score, baseline, p, device, *loop)
