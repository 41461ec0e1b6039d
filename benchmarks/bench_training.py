"""Tokens/s of worker.training.train() logging to MLflow vs a bare torch loop.

Same model, data, batch, steps and seed, in one process, alternating rounds so that drift in
the machine's speed hits both; the best round of each counts (as timeit does: other load only
ever slows a round down). Stops starting rounds after --budget seconds.
Run: `python benchmarks/bench_training.py [--steps N] [--rounds R]`.
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
from worker import data
from worker.evaluation import causal_lm_loss
from worker.model import build_model
from worker.tokenizer import ByteTokenizer
from worker.tracking import MlflowTracker
from worker.training import (
    TrainParams,
    build_optimizer,
    build_scheduler,
    seed_everything,
    train,
)

log = logging.getLogger("bench_training")


def bench_doc(steps: int) -> dict[str, Any]:
    """FACTS' tiny model: hidden 128, 2 layers, batch 8 x 128."""
    return normalize(
        {
            "model": {"model_dim": 128, "num_attention_heads": 8, "num_hidden_layers": 2},
            "training": {
                "num_training_steps": steps,
                "per_device_train_batch_size": 8,
                "eval_every_steps": steps,
                "learning_rate": 1e-3,
            },
            "data": {"seq_len": 128},
        }
    )


def splits(doc: dict[str, Any]) -> data.Splits:
    """Byte-tokenised train/validation splits of the doc's dataset."""
    raw = data.load_corpus(doc["data"]["dataset"])
    train_raw, val_raw = data.split_bytes(raw, doc["data"]["validation_fraction"])
    tok = ByteTokenizer()
    return data.Splits(tok.encode_corpus(train_raw), tok.encode_corpus(val_raw))


def bare_loop(doc: dict[str, Any], s: data.Splits) -> float:
    """The same optimiser steps with nothing around them; returns tokens/s."""
    p = TrainParams.from_doc(doc)
    seed_everything(p.seed, "cpu")
    model = build_model(doc, 259)
    model.train()
    optimizer = build_optimizer(model, p)
    scheduler = build_scheduler(optimizer, p)
    generator = torch.Generator().manual_seed(p.seed)
    started = time.perf_counter()
    for _ in range(p.num_training_steps):
        x, y = data.get_batch(s.train, p.batch_size, p.seq_len, generator)
        loss = causal_lm_loss(model(input_ids=x, use_cache=False).logits, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()
    return p.num_training_steps * p.tokens_per_step / (time.perf_counter() - started)


class TimedTracker(MlflowTracker):
    """An MlflowTracker that adds up the seconds spent in log_metrics and flush."""

    seconds = 0.0

    def log_metrics(self, step: int, metrics: Any) -> None:
        started = time.perf_counter()
        super().log_metrics(step, metrics)
        self.seconds += time.perf_counter() - started


def tracked_loop(
    doc: dict[str, Any], s: data.Splits, tracker: TimedTracker, i: int
) -> tuple[float, float]:
    """train() with per-step metrics going to MLflow; returns tokens/s and the MLflow share."""
    p = TrainParams.from_doc(doc)
    seed_everything(p.seed, "cpu")
    model = build_model(doc, 259)
    tracker.start("bench", f"bench-{i}", {}, {})
    tracker.seconds = 0.0
    result = train(model, s, p, "cpu", tracker)
    loop_seconds = p.num_training_steps * p.tokens_per_step / result.metrics["tokens_per_second"]
    share = tracker.seconds / loop_seconds  # an upper bound: includes the eval-time logging
    tracker.end("FINISHED")
    return result.metrics["tokens_per_second"], share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--budget", type=float, default=90.0, help="seconds")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default); 1 is steadier on a busy machine",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    doc, started = bench_doc(args.steps), time.perf_counter()
    s = splits(doc)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = TimedTracker(
            f"sqlite:///{tmp}/mlflow.db", artifact_root=str(Path(tmp) / "a"), flush_every_s=1.0
        )
        tracker.experiment_id("bench")  # create the store outside the measurement
        bare_loop(bench_doc(5), s)  # warm up allocator and kernels
        bare, tracked, shares = [], [], []
        for i in range(args.rounds):
            if i and time.perf_counter() - started > args.budget:
                break
            bare.append(bare_loop(doc, s))
            speed, share = tracked_loop(doc, s, tracker, i)
            tracked.append(speed)
            shares.append(share)
            log.info(
                "round %d: bare %.0f tok/s, train()+MLflow %.0f tok/s (MLflow calls %.1f%%)",
                i,
                bare[-1],
                tracked[-1],
                100 * share,
            )
    log.info("best: bare %.0f tok/s, train()+MLflow %.0f tok/s", max(bare), max(tracked))
    log.info(
        "ratio train()+MLflow / bare: best %.3f, median %.3f (%.0f s)",
        max(tracked) / max(bare),
        statistics.median(tracked) / statistics.median(bare),
        time.perf_counter() - started,
    )
    log.info(
        "time inside MLflow calls: median %.1f%% of the training loop",
        100 * statistics.median(shares),
    )


if __name__ == "__main__":
    main()
