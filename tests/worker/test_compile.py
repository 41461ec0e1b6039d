"""training.compile (issue 12): a tiny run trains through torch.compile on the CPU, its
routing is still counted, and sampling runs on the plain module."""

from __future__ import annotations

import math

import pytest

from tests.support.worker import splits_of, tiny_doc
from worker.evaluation import sample
from worker.model import build_model
from worker.tokenizer import ByteTokenizer
from worker.training import TrainParams, train


class _Recorder:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.artifacts: dict[str, str] = {}

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics |= metrics

    def log_artifact_text(self, text: str, name: str) -> None:
        self.artifacts[name] = text


@pytest.mark.slow  # compiling the tiny model takes about a minute on this CPU
def test_a_compiled_tiny_run_trains_on_the_cpu() -> None:
    import torch._dynamo

    doc = tiny_doc(training={"num_training_steps": 5, "eval_every_steps": 5, "compile": True})
    torch.manual_seed(0)
    model = build_model(doc, 259)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    tracker = _Recorder()
    result = train(model, splits_of(doc), TrainParams.from_doc(doc), "cpu", tracker)  # type: ignore[arg-type]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
    assert math.isfinite(result.metrics["train_loss"]) and result.metrics["val_loss"] < 5.6
    assert "moe_load_max_fraction_layer_1" in tracker.metrics  # hooks ran in the graph
    assert "moe_load.json" in tracker.artifacts
    assert type(model).__name__ == "DeepseekV2ForCausalLM"  # the caller's module, not compiled
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    prompts = splits_of(doc).validation[:64].reshape(2, 32)
    samples = sample(model, ByteTokenizer(), prompts, doc["generation"], "cpu", seed=1)
    assert samples.metrics["gen_mean_length"] > 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # eager sampling
