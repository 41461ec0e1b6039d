"""Training: data, tokenizers, the loop's options, determinism, stopping, failures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.support.worker import make_job, splits_of, tiny_doc
from worker import data
from worker.execute import Stopped, execute
from worker.failures import describe_error, is_out_of_memory
from worker.model import build_model
from worker.tokenizer import BpeTokenizer, ByteTokenizer, build_tokenizer, load_tokenizer
from worker.tracking import NullTracker
from worker.training import TrainParams, autocast, train

# -- data and tokenizers ---------------------------------------------------------------------


def test_corpora_load_and_split_contiguously() -> None:
    raw = data.load_corpus("builtin:pydoc")
    assert len(raw) > 400_000 and data.dataset_sha256(raw) == data.dataset_sha256(raw)
    train_part, val_part = data.split_bytes(raw, 0.1)
    assert train_part + val_part == raw and len(val_part) == round(len(raw) * 0.1)
    assert len(data.load_corpus("builtin:licenses")) > 100_000
    with pytest.raises(data.DatasetError, match="unknown dataset"):
        data.load_corpus("builtin:nope")


def test_file_dataset(tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("hello")
    assert data.load_corpus("file:c.txt", tmp_path) == b"hello"
    with pytest.raises(data.DatasetError, match="not a readable file inside"):
        data.load_corpus("file:missing.txt", tmp_path)


def test_batches_are_seeded_and_shifted() -> None:
    ids = torch.arange(1000)
    x1, y1 = data.get_batch(ids, 4, 16, torch.Generator().manual_seed(3))
    x2, _ = data.get_batch(ids, 4, 16, torch.Generator().manual_seed(3))
    assert torch.equal(x1, x2) and x1.shape == (4, 16)
    assert torch.equal(x1[:, 1:], y1[:, :-1])
    windows = [x for x, _ in data.eval_batches(ids, 4, 16, max_batches=2)]
    again = [x for x, _ in data.eval_batches(ids, 4, 16, max_batches=2)]
    assert len(windows) == 2 and all(torch.equal(a, b) for a, b in zip(windows, again, strict=True))


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_tokenizers_round_trip_and_save(kind: str, tmp_path: Path) -> None:
    raw = data.load_corpus("builtin:pydoc")[:200_000]
    tok = build_tokenizer(kind, raw, 512)
    text = "def f(x):\n    return x  # héllo"
    assert tok.decode(tok.encode(text)) == text
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.encode(text) == tok.encode(text) and again.vocab_size == tok.vocab_size
    assert torch.equal(again.encode_corpus(raw[:5000]), tok.encode_corpus(raw[:5000]))
    if kind == "bpe":
        assert isinstance(tok, BpeTokenizer) and tok.vocab_size == 512
        assert [tok.backend.token_to_id(t) for t in ("<pad>", "<s>", "</s>")] == [0, 1, 2]
    else:
        assert isinstance(tok, ByteTokenizer) and tok.encode("A") == [ord("A") + 3]


def test_warmup_from_ratio_or_steps() -> None:
    assert TrainParams.from_doc(tiny_doc()).warmup_steps == 2
    doc = tiny_doc(training={"num_warmup_steps": 5, "warmup_ratio": None})
    assert TrainParams.from_doc(doc).warmup_steps == 5


def test_fp16_on_cpu_autocasts_to_bf16() -> None:
    ctx = autocast("cpu", "fp16")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16


# -- the training loop -----------------------------------------------------------------------


@pytest.mark.slow
def test_trained_run_is_fully_tracked(trained: dict) -> None:
    result, doc = trained["result"], trained["doc"]
    client = MlflowClient(trained["uri"])
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED" and result.status == "succeeded"
    assert run.data.params["training.learning_rate"] == str(doc["training"]["learning_rate"])
    assert run.data.params["model.intermediate_size"] == "null"
    assert run.data.tags["registry.config"] == "trained"
    assert run.data.tags["registry.config_hash"] == result.provenance["config_hash"]
    assert {"registry.version", "registry.run_id", "registry.attempt"} <= run.data.tags.keys()
    history = client.get_metric_history(result.mlflow_run_id, "train_loss")
    assert [m.step for m in history] == list(range(1, 21))
    losses = [m.value for m in history]
    assert sum(losses[-3:]) < sum(losses[:3])
    assert [m.step for m in client.get_metric_history(result.mlflow_run_id, "val_loss")] == [10, 20]
    for name in (
        "train_loss",
        "val_loss",
        "val_perplexity",
        "val_accuracy",
        "tokens_per_second",
        "gen_distinct_2",
        "gen_repetition_rate",
        "peak_memory_mb",
    ):
        assert math.isfinite(result.metrics[name]), name
        assert run.data.metrics[name] == pytest.approx(result.metrics[name]), name
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"checkpoint", "config.yaml", "provenance.json", "samples.txt"} <= artifacts
    checkpoint = {a.path for a in client.list_artifacts(result.mlflow_run_id, "checkpoint")}
    assert {
        "checkpoint/model.safetensors",
        "checkpoint/registry_config.yaml",
        "checkpoint/registry_tokenizer.json",
    } <= checkpoint
    assert trained["progress"][0] == {"phase": "started", "mlflow_run_id": result.mlflow_run_id}


@pytest.mark.slow
def test_provenance_is_complete(trained: dict) -> None:
    prov = trained["result"].provenance
    for key in (
        "seed",
        "config_hash",
        "python",
        "torch",
        "transformers",
        "mlflow",
        "device",
        "dataset_sha256",
        "code_version",
        "platform",
        "tokenizer",
        "deterministic",
    ):
        assert prov[key] is not None, key
    assert prov["device"] == "cpu" and prov["seed"] == 42 and prov["deterministic"] is True
    stored = MlflowClient(trained["uri"]).download_artifacts(
        trained["result"].mlflow_run_id, "provenance.json"
    )
    assert json.loads(Path(stored).read_text()) == prov


@pytest.mark.slow
def test_llama_with_accumulation_checkpointing_and_bf16() -> None:
    doc = tiny_doc(
        model={"architecture": "llama"},
        training={
            "gradient_accumulation_steps": 2,
            "gradient_checkpointing": True,
            "precision": "fp16",
            "num_training_steps": 6,
            "eval_every_steps": 3,
        },
    )
    torch.manual_seed(0)
    model = build_model(doc, 259)
    assert model.is_gradient_checkpointing and type(model).__name__ == "LlamaForCausalLM"
    tracker = NullTracker()
    result = train(model, splits_of(doc), TrainParams.from_doc(doc), "cpu", tracker)
    assert result.steps == 6 and math.isfinite(result.metrics["val_loss"])
    assert [s for s, k, _ in tracker.metrics if k == "train_loss"] == list(range(1, 7))


_SAME_SEED = """
import json, torch
from tests.support.worker import splits_of, tiny_doc
from worker.tracking import NullTracker
from worker.model import build_model
from worker.training import TrainParams, seed_everything, train
doc = tiny_doc(training={"num_training_steps": 8, "eval_every_steps": 8})
seed_everything(42, "cpu")
model = build_model(doc, 259)
tracker = NullTracker()
train(model, splits_of(doc), TrainParams.from_doc(doc), "cpu", tracker)
print(json.dumps([v.hex() for s, k, v in tracker.metrics if k == "train_loss"]))
"""


@pytest.mark.slow
def test_same_seed_is_bit_identical_across_processes() -> None:
    def losses() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _SAME_SEED],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parents[2],
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    first, second = losses(), losses()
    assert len(first) == 8 and first == second


@pytest.mark.slow
def test_should_stop_raises_stopped_and_kills_the_mlflow_run(tracker_factory, tmp_path) -> None:
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 6

    seen: list[dict] = []
    with pytest.raises(Stopped) as info:
        execute(
            make_job(tiny_doc(), name="stopped"),
            tracker_factory(),
            "cpu",
            should_stop,
            seen.append,
            tmp_path,
        )
    run_id = info.value.mlflow_run_id
    assert seen[0]["mlflow_run_id"] == run_id
    client = MlflowClient(tracker_factory().tracking_uri)
    assert client.get_run(run_id).info.status == "KILLED"
    assert len(client.get_metric_history(run_id, "train_loss")) >= 1


def test_an_error_fails_the_mlflow_run(tracker_factory, tmp_path) -> None:
    doc = tiny_doc(data={"dataset": "file:missing.txt"})
    with pytest.raises(data.DatasetError) as info:
        execute(
            make_job(doc, name="broken"),
            tracker_factory(),
            "cpu",
            lambda: False,
            lambda _: None,
            tmp_path,
        )
    client = MlflowClient(tracker_factory().tracking_uri)
    assert client.get_run(info.value.mlflow_run_id).info.status == "FAILED"
    assert describe_error(info.value)["kind"] == "exception"


# -- failures --------------------------------------------------------------------------------


def test_out_of_memory_is_classified_with_remedies() -> None:
    try:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    except torch.cuda.OutOfMemoryError as exc:
        described = describe_error(exc, tiny_doc(training={"per_device_train_batch_size": 16}))
    assert described["kind"] == "out_of_memory"
    assert described["type"] == "torch.OutOfMemoryError" or "OutOfMemoryError" in described["type"]
    remedies = " ".join(described["remedies"])
    assert "gradient_checkpointing" in remedies and "16 x 1 -> 8 x 2" in remedies
    assert "model_dim" in remedies and "Tried to allocate" in described["traceback"]
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate: out of memory"))
    assert is_out_of_memory(MemoryError())
    wrapped = ValueError("step failed")
    wrapped.__cause__ = MemoryError()
    assert is_out_of_memory(wrapped)
    assert describe_error(ValueError("bad")) | {"traceback": ""} == {
        "kind": "exception",
        "type": "builtins.ValueError",
        "message": "bad",
        "traceback": "",
    }


@pytest.mark.parametrize(
    "training",
    [
        {"num_training_steps": 3, "warmup_ratio": 0.35},  # ceil(1.05) = 2; round() said 1
        {"num_training_steps": 30, "warmup_ratio": 0.1},  # 3.0000000000000004 in binary
        {"num_training_steps": 1000, "warmup_ratio": 0.0},
        {"num_training_steps": 50, "warmup_ratio": None, "num_warmup_steps": 7},
    ],
)
def test_worker_warms_up_for_the_steps_the_estimate_and_form_show(
    training: dict[str, Any],
) -> None:
    from registry.document.estimate import estimate

    doc = tiny_doc(training=training)
    assert TrainParams.from_doc(doc).warmup_steps == estimate(doc)["warmup_steps"]
