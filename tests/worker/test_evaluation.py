"""Evaluation: the sampling metrics, generation arguments, and evaluate runs."""

from __future__ import annotations

import math

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.support.worker import make_job, tiny_doc
from worker.evaluation import (
    MAX_NEW_TOKENS,
    distinct_2,
    evaluate_loss,
    generation_kwargs,
    max_new_tokens_for,
    repetition_rate,
)
from worker.execute import execute


def test_distinct_2_is_the_mean_per_continuation() -> None:
    assert distinct_2([[1, 2, 3, 4]]) == 1.0
    assert distinct_2([[5, 5, 5, 5, 5]]) == 0.25
    assert distinct_2([[1, 2, 3], [7, 7, 7]]) == pytest.approx((1.0 + 0.5) / 2)
    assert distinct_2([[1], []]) == 1.0


def test_repetition_rate_looks_back_a_window() -> None:
    assert repetition_rate([[1, 2, 3, 4]]) == 0.0
    assert repetition_rate([[9, 9, 9, 9]]) == 1.0
    assert repetition_rate([[1, 2, 1, 2]]) == pytest.approx(2 / 3)
    assert repetition_rate([[1, 2, 3, 1]], window=2) == 0.0
    assert repetition_rate([[]]) == 0.0


def test_temperature_zero_is_greedy() -> None:
    gen = {"temperature": 0.0, "top_p": 0.9, "repetition_penalty": 1.2, "max_length": 64}
    kwargs = generation_kwargs(gen, 10)
    assert kwargs["do_sample"] is False and "temperature" not in kwargs
    sampled = generation_kwargs(gen | {"temperature": 0.7}, 10)
    assert sampled["do_sample"] and sampled["top_p"] == 0.9 and sampled["repetition_penalty"] == 1.2


def test_new_tokens_are_capped() -> None:
    gen = {"max_length": 100_000}
    assert max_new_tokens_for(gen, 32, 512) == min(512 - 32, MAX_NEW_TOKENS)
    assert max_new_tokens_for({"max_length": 40}, 32, 512) == 8


def test_evaluate_loss_of_a_perfect_model() -> None:
    class Echo(torch.nn.Module):
        """Predicts the next token as input + 1, with certainty."""

        def forward(self, input_ids: torch.Tensor, use_cache: bool = False):
            logits = torch.full((*input_ids.shape, 10), -1e4)
            logits.scatter_(-1, (input_ids + 1).unsqueeze(-1) % 10, 1e4)
            return type("Out", (), {"logits": logits})()

    x = torch.tensor([[1, 2, 3], [4, 5, 6]])
    metrics = evaluate_loss(Echo(), [(x, x + 1)], "cpu")
    assert metrics["val_accuracy"] == 1.0 and metrics["val_loss"] == pytest.approx(0.0)
    assert metrics["val_perplexity"] == pytest.approx(1.0)


@pytest.mark.slow
def test_evaluate_run_uses_this_versions_generation(trained: dict, tracker_factory, tmp_path):
    source = trained["result"].mlflow_run_id
    outcomes = {}
    for temperature in (0.0, 1.0):
        doc = tiny_doc(generation={"temperature": temperature, "repetition_penalty": 1.0})
        job = make_job(
            doc,
            kind="evaluate",
            run_id=2,
            name="trained",
            from_run={"id": 1, "mlflow_run_id": source},
        )
        result = execute(
            job,
            tracker_factory(),
            "cpu",
            lambda: False,
            lambda _: None,
            tmp_path / str(temperature),
        )
        outcomes[temperature] = result
        run = MlflowClient(trained["uri"]).get_run(result.mlflow_run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["registry.from_mlflow_run_id"] == source
        assert "train_loss" not in result.metrics
        for name in (
            "val_loss",
            "val_perplexity",
            "val_accuracy",
            "tokens_per_second",
            "gen_distinct_2",
            "gen_repetition_rate",
            "peak_memory_mb",
        ):
            assert math.isfinite(result.metrics[name]), name
        # Same weights, data and validation windows as the training run's final evaluation.
        assert result.metrics["val_loss"] == pytest.approx(trained["result"].metrics["val_loss"])
    greedy, sampled = outcomes[0.0].metrics, outcomes[1.0].metrics
    assert greedy["gen_distinct_2"] != sampled["gen_distinct_2"]
    assert greedy["gen_repetition_rate"] != sampled["gen_repetition_rate"]


def test_evaluate_without_a_source_run_fails(tracker_factory, tmp_path) -> None:
    job = make_job(tiny_doc(), kind="evaluate", name="no-source", from_run=None)
    with pytest.raises(ValueError, match="from_run"):
        execute(job, tracker_factory(), "cpu", lambda: False, lambda _: None, tmp_path)
