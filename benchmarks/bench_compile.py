"""Tokens/s of worker.training.train() with ``training.compile: true`` vs eager, on this device.

The same document, data, steps and seed; rounds alternate (eager, compiled) so that drift in
the machine's speed hits both, and the best round of each counts. Tokens/s is train()'s own
figure: measured after its warm-up steps (worker.reporting.WARMUP_STEPS), so the compilation
itself (paid in the first steps) is reported apart, as the first compiled round's extra wall
time. Generation is not measured: it runs on the plain module either way.
Run: `python benchmarks/bench_compile.py [--steps N] [--rounds R] [--arch llama|deepseek_v2]`.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import torch

from registry.document.spec import normalize
from worker import data
from worker.model import build_model
from worker.tokenizer import ByteTokenizer
from worker.tracking import NullTracker
from worker.training import TrainParams, seed_everything, train

log = logging.getLogger("bench_compile")


def bench_doc(arch: str, steps: int, dim: int, layers: int, compiled: bool) -> dict[str, Any]:
    """A small model (batch 8 x 128 tokens) trained for `steps`, compiled or not."""
    return normalize(
        {
            "model": {
                "architecture": arch,
                "model_dim": dim,
                "num_attention_heads": 8,
                "num_hidden_layers": layers,
            },
            "training": {
                "num_training_steps": steps,
                "per_device_train_batch_size": 8,
                "eval_every_steps": steps,
                "learning_rate": 1e-3,
                "compile": compiled,
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


def one_run(doc: dict[str, Any], s: data.Splits, device: str) -> tuple[float, float]:
    """(tokens/s after warm-up, wall seconds of the whole train() call)."""
    p = TrainParams.from_doc(doc)
    seed_everything(p.seed, device)
    model = build_model(doc, 259).to(device)
    started = time.perf_counter()
    result = train(model, s, p, device, NullTracker())
    return result.metrics["tokens_per_second"], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--arch", default="deepseek_v2", choices=["deepseek_v2", "llama"])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    eager_doc = bench_doc(args.arch, args.steps, args.dim, args.layers, False)
    compiled_doc = bench_doc(args.arch, args.steps, args.dim, args.layers, True)
    s = splits(eager_doc)
    eager: list[float] = []
    compiled: list[float] = []
    walls: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(args.rounds):
        for name, doc, out in (("eager", eager_doc, eager), ("compiled", compiled_doc, compiled)):
            speed, wall = one_run(doc, s, args.device)
            out.append(speed)
            walls[name].append(wall)
            log.info("round %d %s: %.0f tok/s after warm-up, %.1f s in all", i, name, speed, wall)
    first_cost = walls["compiled"][0] - min(walls["eager"])
    log.info("best: eager %.0f tok/s, compiled %.0f tok/s", max(eager), max(compiled))
    log.info(
        "ratio compiled / eager (%s, %s): %.3f; the first compiled run's extra wall time "
        "(compilation): %.1f s",
        args.arch,
        args.device,
        max(compiled) / max(eager),
        first_cost,
    )


if __name__ == "__main__":
    main()
