"""Examples/s of the classification and matching loops (worker.taskloop, logging to MLflow)
against a bare torch loop doing the same optimiser steps.

Same model, data, micro-batches (the same seeded draws), AdamW, schedule and clipping, in one
process, both timed after the same :data:`worker.reporting.WARMUP_STEPS` warm-up steps; the
rounds alternate so that drift in the machine's speed hits both, and the best round of each
counts (other load only ever slows a round down). The loop's own work beyond
the bare one is its reporting (per-step losses to MLflow in batches), the periodic scoring of
the validation split (left out of its clock, and so of its examples/s) and the progress bar.
Run: ``python benchmarks/bench_tasks.py [--steps N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from registry.document.spec import normalize
from worker import classification, matching
from worker.matching_model import build_matcher
from worker.model import build_classifier
from worker.reporting import WARMUP_STEPS
from worker.tracking import MlflowTracker
from worker.training import TrainParams, seed_everything

log = logging.getLogger("bench_tasks")

MODEL = {"architecture": "llama", "model_dim": 64, "num_attention_heads": 4}
MODEL |= {"num_hidden_layers": 2, "max_position_embeddings": 64}


def bench_doc(task: str, steps: int) -> dict[str, Any]:
    """A small model of each task: llama 64 dims, 2 layers; batch 32; 48 tokens."""
    data = {"classification": "builtin:stdlib-docs", "multimodal_matching": "builtin:shapes"}
    weights = {"visual_encoder_weight": 0.7, "text_encoder_weight": 0.3}
    return normalize(
        {
            "task": task,
            "model": MODEL,
            "training": {
                "num_training_steps": steps,
                "per_device_train_batch_size": 32,
                "eval_every_steps": steps,
                "learning_rate": 1e-3,
            },
            "data": {"dataset": data[task], "seq_len": 48, "validation_fraction": 0.2},
            "multimodal": weights if task == "multimodal_matching" else {},
        }
    )


def prepared(task: str, doc: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(data, model builder, stepper class) of the task."""
    if task == "classification":
        data: Any = classification.load(doc, ".", 259)
        return (
            data,
            lambda: build_classifier(doc, 259, len(data.labels)),
            classification.ClassifierStepper,
        )
    pairs = matching.load(doc, ".", 259)
    return pairs, lambda: build_matcher(doc, 259), matching.MatcherStepper


def bare_loop(doc: dict[str, Any], data: Any, build: Any, stepper_class: Any) -> float:
    """The task's micro-batches, loss, backward, clip and AdamW with nothing around them."""
    p = TrainParams.from_doc(doc)
    seed_everything(p.seed, "cpu")
    model = build()
    model.train()
    stepper = stepper_class(model, data, p, "cpu")  # for its rows, loss and optimiser only
    started = time.perf_counter()
    for step in range(1, p.num_training_steps + 1):
        loss = stepper.loss(stepper.rows())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.max_grad_norm)
        stepper.optimizer.step()
        stepper.scheduler.step()
        stepper.optimizer.zero_grad(set_to_none=True)
        if step == WARMUP_STEPS:  # the loop's clock starts here too (worker.reporting)
            loss.item()
            started = time.perf_counter()
    loss.item()
    timed = p.num_training_steps - WARMUP_STEPS
    return timed * p.batch_size / (time.perf_counter() - started)


def tracked_loop(task: str, doc: dict[str, Any], data: Any, build: Any, tracker: Any) -> float:
    """The worker's loop (train_classifier / train_matcher) logging to MLflow; examples/s."""
    p = TrainParams.from_doc(doc)
    seed_everything(p.seed, "cpu")
    model = build()
    train = classification.train_classifier if task == "classification" else matching.train_matcher
    tracker.start("bench", f"bench-{task}", {}, {})
    metrics = train(model, data, p, "cpu", tracker)
    tracker.end("FINISHED")
    return float(metrics["tokens_per_second"]) / p.seq_len  # tokens/s counts seq_len a row


def measure(task: str, steps: int, rounds: int, budget: float, tracker: Any) -> None:
    doc, started = bench_doc(task, steps), time.perf_counter()
    data, build, stepper_class = prepared(task, doc)
    bare_loop(bench_doc(task, 3), data, build, stepper_class)  # warm up allocator and kernels
    bare, tracked = [], []
    for i in range(rounds):
        if i and time.perf_counter() - started > budget:
            break
        bare.append(bare_loop(doc, data, build, stepper_class))
        tracked.append(tracked_loop(task, doc, data, build, tracker))
        log.info(
            "%s round %d: bare %.0f ex/s, loop+MLflow %.0f ex/s", task, i, bare[-1], tracked[-1]
        )
    log.info(
        "%s ratio loop+MLflow / bare: best %.3f, median %.3f (best %.0f vs %.0f examples/s)",
        task,
        max(tracked) / max(bare),
        statistics.median(tracked) / statistics.median(bare),
        max(tracked),
        max(bare),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        tracker = MlflowTracker(f"sqlite:///{tmp}/mlflow.db", artifact_root=str(Path(tmp) / "a"))
        tracker.experiment_id("bench")  # create the store outside the measurement
        for task in ("classification", "multimodal_matching"):
            measure(task, args.steps, args.rounds, args.budget, tracker)


if __name__ == "__main__":
    main()
