"""Memory per device under data parallel and fully sharded data parallel; active parameters."""

from __future__ import annotations

from typing import Any

import pytest

from registry.document import estimate as est
from registry.document.activations import activation_bytes
from tests.support.architectures import LLAMA_3_8B, REAL_MODELS, shaped

GIB = 1024**3


def _llama(gpus: int, **training: Any) -> dict[str, Any]:
    return shaped(
        LLAMA_3_8B,
        training={"precision": "bf16", "per_device_train_batch_size": 1, **training},
        data={"seq_len": 2048},
        resources={"gpus": gpus, "gpu_memory_gb": 80.0},
    )


def test_one_device_shards_nothing() -> None:
    per_device = est.estimate(_llama(1))["memory_per_device_gb"]
    assert per_device["fully_sharded"] == per_device["data_parallel"]


def test_data_parallel_keeps_a_full_copy_on_every_device() -> None:
    one, eight = est.estimate(_llama(1)), est.estimate(_llama(8))
    assert (
        eight["memory_per_device_gb"]["data_parallel"]
        == one["memory_per_device_gb"]["data_parallel"]
    )
    assert eight["peak_memory_gb"] == one["peak_memory_gb"]  # what the worker runs
    assert eight["activations_gb"] == one["activations_gb"]  # each device its own micro-batch


def test_fully_sharded_splits_the_state_and_gathers_one_layer_at_a_time() -> None:
    doc = _llama(8)
    e, params = est.estimate(doc), 8_030_261_248
    layer = 4096 * (2 * 4096 + 2 * 1024) + 3 * 4096 * 14336 + 2 * 4096  # < embedding
    unit = max(layer, 128256 * 4096)
    for checkpointing in (True, False):
        key = "with_checkpointing" if checkpointing else "without_checkpointing"
        expected = -(-16 * params // 8) + 3 * unit * 2 + activation_bytes(doc, checkpointing)
        assert e["memory_per_device_gb"]["fully_sharded"][key] == round(expected / GIB, 3)
    assert (
        e["peak_memory_gb_fully_sharded"]
        == e["memory_per_device_gb"]["fully_sharded"]["without_checkpointing"]
    )
    assert (
        e["peak_memory_gb"] == e["memory_per_device_gb"]["data_parallel"]["without_checkpointing"]
    )


def test_more_devices_need_less_memory_each_and_the_fewest_that_fit_are_named() -> None:
    figures = [
        est.estimate(_llama(n))["memory_per_device_gb"]["fully_sharded"]["with_checkpointing"]
        for n in (2, 4, 8, 64)
    ]
    assert figures == sorted(figures, reverse=True)
    need = est.estimate(_llama(1, gradient_checkpointing=True))["gpus_to_fit_fully_sharded"]
    assert need is not None and need >= 2
    fits = est.estimate(_llama(need))["memory_per_device_gb"]["fully_sharded"]
    short = est.estimate(_llama(need - 1))["memory_per_device_gb"]["fully_sharded"]
    assert fits["with_checkpointing"] <= 80.0 < short["with_checkpointing"]


def test_a_model_that_fits_needs_one_device_and_a_batch_too_big_for_any_needs_none() -> None:
    small = shaped({"architecture": "llama"})
    assert est.estimate(small)["gpus_to_fit_fully_sharded"] == 1
    huge_batch = shaped(
        LLAMA_3_8B,
        training={"per_device_train_batch_size": 4096},
        data={"seq_len": 8192},
        resources={"gpu_memory_gb": 80.0},
    )
    assert est.estimate(huge_batch)["gpus_to_fit_fully_sharded"] is None


def test_half_precision_adds_the_weight_copies_to_data_parallel_only() -> None:
    fp32, bf16 = _llama(8, precision="fp32"), _llama(8)
    p = est.parameter_count(fp32)
    dp32 = est.estimate(fp32)["memory_per_device_gb"]["data_parallel"]["with_checkpointing"]
    dp16 = est.estimate(bf16)["memory_per_device_gb"]["data_parallel"]["with_checkpointing"]
    acts = activation_bytes(fp32, True) - activation_bytes(bf16, True)
    assert dp16 - dp32 == pytest.approx((2 * p - acts) / GIB, abs=0.002)


def test_tied_embeddings_are_counted_once() -> None:
    untied = shaped({"architecture": "llama", "model_dim": 64, "num_attention_heads": 8})
    tied = shaped({**untied["model"], "tie_word_embeddings": True})
    assert est.parameter_count(untied) - est.parameter_count(tied) == 259 * 64
    assert est.compute_parameter_count(tied) == est.active_parameter_count(tied)


def test_dense_models_use_every_parameter_and_moe_models_their_chosen_experts() -> None:
    llama = shaped({"architecture": "llama"})
    assert est.active_parameter_count(llama) == est.parameter_count(llama)
    moe = {"n_routed_experts": 8, "num_experts_per_tok": 3, "first_k_dense_replace": 2}
    deepseek = shaped({"num_hidden_layers": 5, "moe": moe})
    expert = 3 * 256 * (768 // 4)
    assert est.parameter_count(deepseek) - est.active_parameter_count(deepseek) == (
        3 * (8 - 3) * expert
    )


def test_training_flops_are_six_per_multiplied_parameter_plus_attention() -> None:
    doc = shaped(REAL_MODELS["llama-2-7b"][0], data={"seq_len": 4096})
    e = est.estimate(doc)
    attention = 6 * 32 * 4096 * 32 * (128 + 128)  # = 12 x layers x seq x model_dim
    assert e["attention_flops_per_token"] == attention == 12 * 32 * 4096 * 4096
    assert e["training_flops_per_token"] == 6 * (6_738_415_616 - 32000 * 4096) + attention


def _memory_warning(doc: dict[str, Any]) -> str:
    from registry.document import advice

    issues = list(advice.memory_fits(doc))
    assert len(issues) == 1 and issues[0].field == "resources.gpu_memory_gb"
    return issues[0].message


def test_the_memory_warning_names_sharding_with_several_devices() -> None:
    message = _memory_warning(_llama(8))
    e = est.estimate(_llama(8))
    assert f"{e['peak_memory_gb']:.2f} GiB per device exceeds gpu_memory_gb (80)" in message
    assert "FSDP" in message and "over the 8 GPUs" in message
    assert f"{e['peak_memory_gb_fully_sharded']:.2f} GiB per device" in message
    assert "resources.gpus to at least" not in message  # eight are enough


def test_the_memory_warning_says_how_many_devices_a_model_needs() -> None:
    message = _memory_warning(_llama(1))
    assert "over the 1 GPUs" not in message
    need = est.estimate(_llama(1))["gpus_to_fit_fully_sharded"]
    assert f"set resources.gpus to at least {need} and shard" in message
