"""Issue 12's optional fields (training.tf32, training.compile, model.moe.aux_loss_alpha) and
the fp32-on-a-GPU warning: hash-stable when unused (CONTRACT 5.4), typed, explained."""

from __future__ import annotations

from typing import Any

import pytest

from registry.document import advice, spec
from registry.document.estimate import estimate

EMPTY_HASH = "4a172f1b5071f2bc1ee84c63c35d3d5f234c7215f7b125f558c7b7b3542c3e12"
LARGE = {"model": {"model_dim": 1024, "num_attention_heads": 16, "num_hidden_layers": 24}}


def _valid(raw: dict[str, Any]) -> spec.Validation:
    result = spec.validate(raw)
    assert result.valid, result.to_dict()["errors"]
    return result


@pytest.mark.parametrize(
    "training",
    [
        {"tf32": None},
        {"tf32": True},
        {"compile": None},
        {"compile": False},
        {"tf32": True, "compile": False},
    ],
)
def test_the_defaults_spelled_out_keep_the_empty_documents_hash(training: dict[str, Any]) -> None:
    result = _valid({"training": training})
    assert result.hash == EMPTY_HASH
    assert "tf32" not in result.normalized["training"]  # type: ignore[index]
    assert "compile" not in result.normalized["training"]  # type: ignore[index]


def test_null_aux_loss_keeps_the_hash_and_a_weight_is_stored() -> None:
    assert _valid({"model": {"moe": {"aux_loss_alpha": None}}}).hash == EMPTY_HASH
    given = _valid({"model": {"moe": {"aux_loss_alpha": 0.003}}})
    assert given.normalized["model"]["moe"] == {"aux_loss_alpha": 0.003}  # type: ignore[index]
    assert given.hash != EMPTY_HASH


@pytest.mark.parametrize(
    ("training", "kept"),
    [({"tf32": False}, {"tf32": False}), ({"compile": True}, {"compile": True})],
)
def test_a_value_that_changes_the_run_is_stored_and_hashed(
    training: dict[str, Any], kept: dict[str, Any]
) -> None:
    result = _valid({"training": training})
    assert kept.items() <= result.normalized["training"].items()  # type: ignore[index]
    assert result.hash != EMPTY_HASH


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"training": {"tf32": "yes"}}, "training.tf32"),
        ({"training": {"compile": 1}}, "training.compile"),
        ({"model": {"moe": {"aux_loss_alpha": -0.1}}}, "model.moe.aux_loss_alpha"),
        ({"model": {"moe": {"aux_loss_alpha": 2.0}}}, "model.moe.aux_loss_alpha"),
        ({"model": {"architecture": "llama", "moe": {"aux_loss_alpha": 0.01}}}, "model.moe"),
    ],
)
def test_bad_values_are_errors_naming_the_field(raw: dict[str, Any], path: str) -> None:
    result = spec.validate(raw)
    assert not result.valid
    assert path in {e.field for e in result.errors}, result.to_dict()["errors"]


def _precision_warning(raw: dict[str, Any]) -> str | None:
    found = [w for w in _valid(raw).warnings if w.field == "training.precision"]
    return found[0].message if found else None


def test_a_large_fp32_run_on_a_gpu_is_told_to_use_bf16_with_the_estimate() -> None:
    assert estimate(spec.normalize(LARGE))["parameters"] >= advice.LARGE_FP32_PARAMETERS
    message = _precision_warning(LARGE)
    assert message is not None and "training.precision: bf16" in message
    bf16 = estimate(spec.normalize({**LARGE, "training": {"precision": "bf16"}}))
    assert f"{bf16['peak_memory_gb']:.2f} GiB" in message
    assert "TF32" in message
    strict = _precision_warning({**LARGE, "training": {"tf32": False}})
    assert strict is not None and "strict fp32" in strict


@pytest.mark.parametrize(
    "raw",
    [
        {},  # 9M parameters: launch-bound, bf16 buys little
        {**LARGE, "training": {"precision": "bf16"}},
    ],
)
def test_small_or_bf16_runs_get_no_precision_warning(raw: dict[str, Any]) -> None:
    assert _precision_warning(raw) is None
