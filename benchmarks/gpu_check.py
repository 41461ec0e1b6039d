"""The GPU check of issue 12: one script, under 10 minutes on one GPU, a table and a JSON file.

1. Device selection: two "daemons" (child processes doing what ``registry-worker --gpus N``
   does before CUDA starts: ``worker.devices.select``, ``apply``, ``choose_device``) each own
   one GPU; on a one-GPU machine the second group (``--gpus 1``) must be refused.
2. Throughput of worker.training.train() (after its warm-up steps) and MFU: bf16, fp32 with
   TF32 (the default), strict fp32 (``training.tf32: false``), and bf16 with strict
   determinism switched off (what determinism costs).
3. Memory: registry.document.estimate's ``peak_memory_gb`` against the measured
   ``torch.cuda.max_memory_allocated`` for fp32 and bf16, with and without checkpointing.
4. Reproducibility: the same document trained twice on the same GPU with strict determinism;
   every per-step loss and gradient norm compared bit for bit (Llama and DeepSeek-V2).
5. ``training.compile``: compiled vs eager tokens/s, and what the compilation cost.

Run: ``python benchmarks/gpu_check.py --out gpu_check.json``. Without CUDA it prints
"no GPU reached" and exits 0; ``--cpu-smoke`` runs every section on the CPU at toy sizes
(the test suite does, so the script cannot rot unseen).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHILD = """
import json, os, sys
from worker import devices
group = devices.select(sys.argv[1], os.environ)
devices.apply(group)
try:
    device = devices.choose_device(group)
except devices.DeviceListError as exc:
    print(json.dumps({"gpus": sys.argv[1], "refused": str(exc)})); sys.exit(0)
import torch
out = {"gpus": sys.argv[1], "device": device, "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
if device.startswith("cuda"):
    props = torch.cuda.get_device_properties(0)
    torch.ones(1, device=device)  # CUDA really starts on the GPU it owns
    out |= {"count": torch.cuda.device_count(), "name": props.name, "uuid": str(props.uuid)}
print(json.dumps(out))
"""


class Recorder:
    """A tracker that keeps every per-step value (for the bit-for-bit comparison)."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.steps.append((step, dict(metrics)))

    def log_artifact_text(self, text: str, name: str) -> None:
        pass

    def curve(self) -> list[tuple[int, float, float]]:
        return [(s, m["train_loss"], m["grad_norm"]) for s, m in self.steps if "train_loss" in m]


def document(size: dict[str, Any], **training: Any) -> dict[str, Any]:
    """A normalised document of `size` (model, steps, batch, seq_len) with `training` over it."""
    from registry.document.spec import normalize

    return normalize(
        {
            "model": dict(size["model"]),
            "training": {
                "num_training_steps": size["steps"],
                "eval_every_steps": size["steps"],
                "per_device_train_batch_size": size["batch"],
                "learning_rate": 3e-4,
                **training,
            },
            "data": {"seq_len": size["seq_len"]},
            "resources": {"gpu_memory_gb": 80.0},
        }
    )


def sizes(smoke: bool) -> dict[str, dict[str, Any]]:
    """The models measured: a 100M-parameter Llama and a DeepSeek-V2 (MoE, MLA); toys for the
    CPU smoke run."""
    if smoke:
        tiny = {"model_dim": 32, "num_attention_heads": 8, "num_hidden_layers": 1}
        llama = {"model": {"architecture": "llama", **tiny}, "steps": 5, "batch": 2, "seq_len": 32}
        deepseek = {"model": tiny, "steps": 4, "batch": 2, "seq_len": 32}
        return {"llama": llama, "deepseek_v2": deepseek, "compile": llama}
    llama = {
        "model": {
            "architecture": "llama",
            "model_dim": 1024,
            "num_attention_heads": 16,
            "num_hidden_layers": 8,
        },
        "steps": 30,
        "batch": 8,
        "seq_len": 512,
    }
    deepseek = {
        "model": {"model_dim": 512, "num_attention_heads": 8, "num_hidden_layers": 4},
        "steps": 20,
        "batch": 8,
        "seq_len": 256,
    }
    return {"llama": llama, "deepseek_v2": deepseek, "compile": llama}


def corpus(doc: dict[str, Any]) -> Any:
    from worker import data
    from worker.tokenizer import ByteTokenizer

    raw = data.load_corpus(doc["data"]["dataset"])
    train_raw, val_raw = data.split_bytes(raw, doc["data"]["validation_fraction"])
    tok = ByteTokenizer()
    return data.Splits(tok.encode_corpus(train_raw), tok.encode_corpus(val_raw))


def train_once(doc: dict[str, Any], device: str, strict: bool = True) -> dict[str, Any]:
    """One train() as the worker runs it; metrics, the per-step curve, the measured peak."""
    import torch

    from worker.model import build_model
    from worker.training import TrainParams, seed_everything, train

    p = TrainParams.from_doc(doc)
    seed_everything(p.seed, device)
    if not strict:
        torch.use_deterministic_algorithms(False)
    torch.manual_seed(p.seed)
    model = build_model(doc, 259).to(device)
    tracker = Recorder()
    try:
        result = train(model, corpus(doc), p, device, tracker)  # type: ignore[arg-type]
        peak = torch.cuda.max_memory_allocated(device) if device.startswith("cuda") else None
    finally:
        del model
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        torch.use_deterministic_algorithms(True)
    return {"metrics": result.metrics, "curve": tracker.curve(), "peak_bytes": peak}


def guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """fn()'s row, or the error it raised (the check goes on to the next row)."""
    started = time.perf_counter()
    try:
        row = fn()
    except Exception as exc:
        row = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def check_devices(smoke: bool) -> list[dict[str, Any]]:
    """Two daemons' device selection, each in a fresh process."""
    import torch

    count = 0 if smoke else torch.cuda.device_count()
    groups = ["none", "none"] if smoke else ["0", "1"]
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PYTHONPATH"] = str(ROOT)
    rows = []
    for gpus in groups:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, gpus],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        row = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-400:]}
        rows.append(row)
    if count >= 2:
        rows.append({"own_gpus_differ": rows[0].get("uuid") != rows[1].get("uuid")})
    elif not smoke:
        rows.append({"second_group_refused_on_one_gpu": "refused" in rows[1]})
    return rows


def throughput_row(doc: dict[str, Any], device: str, label: str, strict: bool) -> dict[str, Any]:
    run = train_once(doc, device, strict)
    m = run["metrics"]
    return {
        "config": label,
        "tokens_per_second": round(m["tokens_per_second"], 1),
        "mfu": None if "throughput_mfu" not in m else round(m["throughput_mfu"], 4),
        "train_loss": m["train_loss"],
    }


def check_throughput(size: dict[str, Any], device: str) -> list[dict[str, Any]]:
    plans: list[tuple[str, dict[str, Any], bool]] = [
        ("bf16", {"precision": "bf16"}, True),
        ("fp32 + TF32 (default)", {"precision": "fp32"}, True),
        ("fp32 strict (tf32: false)", {"precision": "fp32", "tf32": False}, True),
        ("bf16, determinism off", {"precision": "bf16"}, False),
    ]
    return [
        guarded(partial(throughput_row, document(size, **t), device, label, strict))
        for label, t, strict in plans
    ]


def memory_row(doc: dict[str, Any], device: str, label: str) -> dict[str, Any]:
    from registry.document.estimate import estimate

    doc = {**doc, "training": {**doc["training"], "num_training_steps": 5, "eval_every_steps": 5}}
    estimated = estimate(doc)["peak_memory_gb"]
    measured = train_once(doc, device)["peak_bytes"]
    gib = None if measured is None else measured / 2**30
    return {
        "config": label,
        "estimate_gib": round(estimated, 3),
        "measured_gib": None if gib is None else round(gib, 3),
        "estimate_over_measured": None if not gib else round(estimated / gib, 3),
    }


def check_memory(size: dict[str, Any], device: str) -> list[dict[str, Any]]:
    rows = []
    for precision in ("fp32", "bf16"):
        for ckpt in (False, True):
            label = f"{precision}, checkpointing {'on' if ckpt else 'off'}"
            doc = document(size, precision=precision, gradient_checkpointing=ckpt)
            rows.append(guarded(partial(memory_row, doc, device, label)))
    return rows


def rerun_row(doc: dict[str, Any], device: str, label: str) -> dict[str, Any]:
    first, second = train_once(doc, device), train_once(doc, device)
    a, b = first["curve"], second["curve"]
    diffs = [max(abs(x[1] - y[1]), abs(x[2] - y[2])) for x, y in zip(a, b, strict=True)]
    return {
        "config": label,
        "steps": len(a),
        "identical": a == b and first["metrics"]["val_loss"] == second["metrics"]["val_loss"],
        "max_abs_difference": max(diffs, default=0.0),
    }


def check_rerun(all_sizes: dict[str, dict[str, Any]], device: str) -> list[dict[str, Any]]:
    rows = []
    for arch in ("llama", "deepseek_v2"):
        for precision in ("bf16", "fp32"):
            doc = document(all_sizes[arch], precision=precision)
            label = f"{arch} {precision}"
            rows.append(guarded(partial(rerun_row, doc, device, label)))
    return rows


def check_compile(size: dict[str, Any], device: str) -> dict[str, Any]:
    def measure() -> dict[str, Any]:
        started = time.perf_counter()
        eager = train_once(document(size, precision="bf16"), device)["metrics"]
        eager_s = time.perf_counter() - started
        started = time.perf_counter()
        compiled = train_once(document(size, precision="bf16", compile=True), device)["metrics"]
        compiled_s = time.perf_counter() - started
        return {
            "eager_tokens_per_second": round(eager["tokens_per_second"], 1),
            "compiled_tokens_per_second": round(compiled["tokens_per_second"], 1),
            "speedup": round(compiled["tokens_per_second"] / eager["tokens_per_second"], 3),
            "compilation_seconds": round(compiled_s - eager_s, 1),
        }

    return guarded(measure)


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers

    env: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(device)
        env |= {
            "gpu_name": torch.cuda.get_device_name(device),
            "compute_capability": f"{major}.{minor}",
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return env


def table(report: dict[str, Any]) -> str:
    """The report as aligned text rows, one section after another."""
    lines = [json.dumps(report["environment"])]
    for section in ("devices", "throughput", "memory", "rerun"):
        lines.append(f"\n== {section}")
        lines += ["  " + "  ".join(f"{k}={v}" for k, v in row.items()) for row in report[section]]
    lines.append("\n== compile")
    lines.append("  " + "  ".join(f"{k}={v}" for k, v in report["compile"].items()))
    return "\n".join(lines)


def run(smoke: bool) -> dict[str, Any]:
    device = "cpu" if smoke else "cuda:0"
    all_sizes = sizes(smoke)
    devices_rows = check_devices(smoke)  # first: children must start CUDA before we hold it
    return {
        "environment": environment(device),
        "devices": devices_rows,
        "throughput": check_throughput(all_sizes["llama"], device),
        "memory": check_memory(all_sizes["llama"], device),
        "rerun": check_rerun(all_sizes, device),
        "compile": check_compile(all_sizes["compile"], device),
    }


def failed(report: dict[str, Any]) -> list[str]:
    """The rows that raised, or a rerun that was not bit-identical."""
    rows = [*report["devices"], *report["throughput"], *report["memory"], *report["rerun"]]
    bad = [json.dumps(r) for r in [*rows, report["compile"]] if "error" in r]
    bad += [json.dumps(r) for r in report["rerun"] if r.get("identical") is False]
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to write the JSON report")
    parser.add_argument("--cpu-smoke", action="store_true", help="every section, toys, CPU")
    args = parser.parse_args(argv)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("no GPU reached: torch sees no CUDA device; nothing measured")
        return 0
    started = time.perf_counter()
    report = run(args.cpu_smoke)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(table(report))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    problems = failed(report)
    for line in problems:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
