"""The estimate counts exactly the parameters of the model the worker builds."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from registry.document import architecture, spec
from registry.document.estimate import estimate, parameter_count, warmup_steps
from worker.model import build_model

CASES: dict[str, dict[str, Any]] = {
    "deepseek-tiny": {"model": {"model_dim": 64, "num_attention_heads": 8, "num_hidden_layers": 2}},
    "deepseek-one-layer-dense": {
        "model": {"model_dim": 64, "num_attention_heads": 8, "num_hidden_layers": 1}
    },
    "deepseek-explicit": {
        "model": {
            "model_dim": 96,
            "num_attention_heads": 12,
            "num_hidden_layers": 3,
            "intermediate_size": 200,
            "vocab_size": 300,
        }
    },
    "deepseek-bpe-wide-heads": {
        "model": {"model_dim": 128, "num_attention_heads": 32, "num_hidden_layers": 2},
        "data": {"tokenizer": "bpe"},
    },
    "deepseek-head-dim-1": {
        "model": {"model_dim": 16, "num_attention_heads": 16, "num_hidden_layers": 2}
    },
    "llama-tiny": {
        "model": {
            "architecture": "llama",
            "model_dim": 64,
            "num_attention_heads": 8,
            "num_hidden_layers": 2,
        }
    },
    "llama-explicit": {
        "model": {
            "architecture": "llama",
            "model_dim": 128,
            "num_attention_heads": 16,
            "num_hidden_layers": 1,
            "intermediate_size": 100,
            "vocab_size": 1000,
        }
    },
    "llama-bpe": {
        "model": {
            "architecture": "llama",
            "model_dim": 96,
            "num_attention_heads": 8,
            "num_hidden_layers": 3,
        },
        "data": {"tokenizer": "bpe"},
    },
}


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


@pytest.mark.parametrize("name", CASES)
def test_parameter_count_is_exact(name: str, torch: Any) -> None:
    pytest.importorskip("transformers")
    doc = spec.normalize(CASES[name])
    torch.manual_seed(0)
    model = build_model(doc)
    actual = sum(p.numel() for p in model.parameters())
    assert estimate(doc)["parameters"] == actual
    assert model.config.vocab_size == estimate(doc)["vocab_size"]
    assert model.config.intermediate_size == estimate(doc)["intermediate_size"]


def test_the_tiny_model_runs_forward_and_backward(torch: Any) -> None:
    pytest.importorskip("transformers")
    doc = spec.normalize(CASES["deepseek-tiny"])
    model = build_model(doc)
    ids = torch.randint(0, estimate(doc)["vocab_size"], (2, 16))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_config_kwargs_for_deepseek_set_the_moe_and_mla_sizes() -> None:
    doc = spec.normalize({"model": {"model_dim": 256, "num_attention_heads": 8}})
    kwargs = architecture.transformers_config_kwargs(doc)
    assert kwargs["num_experts_per_tok"] == 2 and kwargs["n_routed_experts"] == 4
    assert kwargs["q_lora_rank"] is None and kwargs["tie_word_embeddings"] is False
    assert (kwargs["qk_nope_head_dim"], kwargs["qk_rope_head_dim"], kwargs["v_head_dim"]) == (
        32,
        16,
        32,
    )
    assert kwargs["kv_lora_rank"] == 128 and kwargs["moe_intermediate_size"] == 768 // 4
    assert (kwargs["pad_token_id"], kwargs["bos_token_id"], kwargs["eos_token_id"]) == (0, 1, 2)


def test_llama_kwargs_have_no_moe() -> None:
    doc = spec.normalize({"model": {"architecture": "llama"}})
    kwargs = architecture.transformers_config_kwargs(doc)
    assert "n_routed_experts" not in kwargs and kwargs["num_key_value_heads"] == 8


@pytest.mark.parametrize(
    ("dim", "inner"), [(64, 256), (256, 768), (768, 2048), (1024, 2816), (4096, 11008)]
)
def test_derived_intermediate_size_follows_llama(dim: int, inner: int) -> None:
    doc = spec.normalize({"model": {"model_dim": dim, "num_attention_heads": 8}})
    assert architecture.resolve_intermediate_size(doc) == inner


def test_vocab_defaults_to_the_tokenizer() -> None:
    assert architecture.resolve_vocab_size(spec.normalize({})) == 259
    assert architecture.resolve_vocab_size(spec.normalize({"data": {"tokenizer": "bpe"}})) == 4096


def test_llama_7b_shape_has_its_known_size() -> None:
    doc = spec.normalize(
        {
            "model": {
                "architecture": "llama",
                "model_dim": 4096,
                "num_attention_heads": 32,
                "num_hidden_layers": 32,
                "vocab_size": 32000,
                "max_position_embeddings": 2048,
            }
        }
    )
    assert parameter_count(doc) == 6_738_415_616  # LLaMA-7B


def test_memory_breakdown_adds_up_and_responds_to_settings() -> None:
    base = {"model": {"model_dim": 512, "num_hidden_layers": 8}, "data": {"seq_len": 256}}
    e = estimate(spec.normalize(base))
    assert e["optimizer_gb"] == pytest.approx(2 * e["weights_gb"], abs=0.002)
    assert e["peak_memory_gb"] == pytest.approx(
        e["weights_gb"] + e["gradients_gb"] + e["optimizer_gb"] + e["activations_gb"], abs=0.005
    )
    ckpt = estimate(spec.normalize({**base, "training": {"gradient_checkpointing": True}}))
    assert ckpt["activations_gb"] < e["activations_gb"] / 3
    assert ckpt["peak_memory_gb"] == e["peak_memory_gb_with_checkpointing"]
    bf16 = estimate(spec.normalize({**base, "training": {"precision": "bf16"}}))
    assert bf16["activations_gb"] < e["activations_gb"]
    assert bf16["weights_gb"] > e["weights_gb"]  # autocast's half-precision copies
    double = estimate(spec.normalize({**base, "training": {"per_device_train_batch_size": 32}}))
    assert double["activations_gb"] == pytest.approx(2 * e["activations_gb"], rel=0.01)
    accum = estimate(spec.normalize({**base, "training": {"gradient_accumulation_steps": 4}}))
    assert accum["peak_memory_gb"] == e["peak_memory_gb"]
    assert accum["effective_batch_size"] == 4 * e["effective_batch_size"]


def test_warmup_steps() -> None:
    assert warmup_steps(spec.normalize({})) == 100
    assert warmup_steps(spec.normalize({"training": {"num_training_steps": 30}})) == 3
    assert warmup_steps(spec.normalize({"training": {"num_warmup_steps": 7}})) == 7


def test_modules_do_not_import_torch() -> None:
    import subprocess

    code = (
        "import sys, registry.document.spec, registry.document.estimate, "
        "registry.document.presets, registry.document.architecture; "
        "sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("dim,heads", [(40, 8), (120, 8)])
def test_deepseek_with_an_odd_head_dim_builds_and_trains(dim: int, heads: int, torch: Any) -> None:
    """An odd head_dim (model_dim 1000 / 8 heads = 125) must not crash DeepSeek-V2's rotary."""
    doc = spec.normalize(
        {
            "model": {"model_dim": dim, "num_attention_heads": heads, "num_hidden_layers": 1},
            "data": {"seq_len": 16},
        }
    )
    model = build_model(doc)
    ids = torch.randint(0, 259, (2, 16))
    model(ids, labels=ids).loss.backward()
    assert sum(p.numel() for p in model.parameters()) == estimate(doc)["parameters"]
