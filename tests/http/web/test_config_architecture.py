"""The config form's "Architecture details" group: GQA, tied embeddings, MoE and MLA inputs
that show what an empty field resolves to, live and without scripts."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from registry.document import presets, spec
from tests.support.web import form_data

TINY = presets.get_preset("tiny-cpu").document
NEW = "/configs/-/new"


def _text(answer: Any) -> str:
    return str(answer.get_data(as_text=True))


def _input(html: str, path: str) -> str:
    match = re.search(rf'<input id="f-{re.escape(path.replace(".", "-"))}"[^>]*>', html)
    assert match, path
    return match.group(0)


def _hint(html: str, path: str) -> str | None:
    """The text of a field's "left empty" hint, or None when it is hidden."""
    match = re.search(
        rf'<p class="derived" id="d-f-{re.escape(path.replace(".", "-"))}"( hidden)?>'
        r"Left empty: <strong>([^<]*)</strong>",
        html,
    )
    assert match, path
    return None if match.group(1) else match.group(2)


def test_empty_architecture_fields_show_their_derived_values(web: FlaskClient) -> None:
    html = _text(web.get(f"{NEW}?from=preset:tiny-cpu"))
    assert "<legend>Architecture details</legend>" in html
    # tiny-cpu: model_dim 64, 8 heads, so head_dim 8; intermediate 256 (Llama's rule)
    expected = {
        "model.num_key_value_heads": "8 (one per attention head)",
        "model.moe.n_routed_experts": "4",
        "model.moe.moe_intermediate_size": "64",
        "model.mla.kv_lora_rank": "32",
        "model.mla.qk_rope_head_dim": "4",
        "model.mla.q_lora_rank": "none: no query compression",
    }
    for path, value in expected.items():
        assert _hint(html, path) == value
        assert f'placeholder="{value}"' in _input(html, path)
    assert '<option value="" selected>null: greedy</option>' in html  # moe.topk_method
    assert 'id="f-model-tie_word_embeddings"' in html and "<code>moe.n_group</code>" in html


def test_given_values_are_shown_and_their_hint_hidden(web: FlaskClient) -> None:
    html = _text(web.get(f"{NEW}?from=preset:deepseek-v2.5"))
    assert 'value="160"' in _input(html, "model.moe.n_routed_experts")
    assert _hint(html, "model.moe.n_routed_experts") is None
    assert 'value="1536"' in _input(html, "model.mla.q_lora_rank")
    assert 'value="5120"' in _input(html, "model.model_dim")


def test_live_check_follows_the_model_section(web: FlaskClient, post_form: Any) -> None:
    data = form_data(TINY) | {"model.model_dim": "128", "model.num_attention_heads": "4"}
    result = post_form(NEW, "/configs/-/check", data).get_json()
    assert result["valid"]
    assert result["derived"]["model.mla.kv_lora_rank"] == "128"  # 4 x head_dim 32
    assert result["derived"]["model.num_key_value_heads"].startswith("4")
    data |= {"model.architecture": "llama", "model.num_key_value_heads": "2"}
    result = post_form(NEW, "/configs/-/check", data).get_json()
    assert result["valid"], result
    assert result["derived"]["model.moe.n_routed_experts"] == "unused (deepseek_v2 only)"
    assert "model.num_key_value_heads" not in result["derived"]  # given, so not derived


def test_nested_errors_land_on_their_field(web: FlaskClient, post_form: Any) -> None:
    data = form_data(TINY) | {"model.moe.n_group": "abc", "model.moe.num_experts_per_tok": "9"}
    result = post_form(NEW, "/configs/-/check", data).get_json()
    assert "is not a whole number" in result["field_errors"]["model.moe.n_group"][0]
    assert "model.moe.num_experts_per_tok" in result["field_errors"]
    data = form_data(TINY) | {"model.architecture": "llama", "model.mla.kv_lora_rank": "16"}
    result = post_form(NEW, "/configs/-/check", data).get_json()
    assert any("deepseek_v2" in m for m in result["other_errors"])


def test_saving_with_empty_fields_keeps_the_hash_and_set_ones_are_stored(
    web: FlaskClient, post_form: Any
) -> None:
    data = form_data(TINY) | {"name": "plain", "action": "check"}
    answer = post_form(NEW, "/configs/-/check", data).get_json()
    assert answer["hash"] == spec.config_hash(TINY)  # the empty group changes nothing
    data = form_data(TINY) | {
        "name": "experts",
        "action": "save",
        "model.moe.n_routed_experts": "8",
        "model.moe.topk_method": "group_limited_greedy",
        "model.moe.n_group": "4",
        "model.moe.topk_group": "2",
        "model.tie_word_embeddings": "true",
    }
    saved = post_form(NEW, NEW, data)
    assert saved.status_code == 303, _text(saved)
    yaml_page = _text(web.get("/configs/experts"))
    assert "n_routed_experts" in yaml_page and "group_limited_greedy" in yaml_page
