"""The real-model presets and the published shapes they follow validate over HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from registry.document.presets import get_preset, list_presets

API = "/api/v1"
#: The models of issue 11's table, as their published config.json describe them.
SHAPES: dict[str, tuple[dict[str, Any], int]] = {
    "deepseek-v2.5": (get_preset("deepseek-v2.5").document["model"], 235_741_434_880),
    "deepseek-v2-lite": (get_preset("deepseek-v2-lite").document["model"], 15_706_484_224),
    "llama-3-8b": (
        {
            "architecture": "llama",
            "model_dim": 4096,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "num_hidden_layers": 32,
            "intermediate_size": 14336,
            "max_position_embeddings": 8192,
            "vocab_size": 128256,
        },
        8_030_261_248,
    ),
    "llama-2-7b": (
        {
            "architecture": "llama",
            "model_dim": 4096,
            "num_attention_heads": 32,
            "num_hidden_layers": 32,
            "intermediate_size": 11008,
            "max_position_embeddings": 4096,
            "vocab_size": 32000,
        },
        6_738_415_616,
    ),
}


def test_every_preset_validates_over_http(client: FlaskClient, auth) -> None:
    for preset in list_presets():
        fetched = client.get(f"{API}/presets/{preset.name}", headers=auth("viewer"))
        assert fetched.status_code == 200
        r = client.post(f"{API}/validate", json={"config": fetched.json}, headers=auth("viewer"))
        assert r.status_code == 200 and r.json["valid"], (preset.name, r.json["errors"])
        assert r.json["normalized"] == preset.document


@pytest.mark.parametrize("name", SHAPES)
def test_published_shapes_validate_with_their_real_totals(
    client: FlaskClient, auth, name: str
) -> None:
    model, total = SHAPES[name]
    body = {"config": {"model": model, "data": {"tokenizer": "bpe"}}}
    r = client.post(f"{API}/validate", json=body, headers=auth("viewer"))
    assert r.status_code == 200 and r.json["valid"], r.json["errors"]
    assert r.json["estimate"]["parameters"] == total


def test_a_wrong_nested_field_is_422_free_and_named(client: FlaskClient, auth) -> None:
    model = {"architecture": "llama", "moe": {"n_routed_experts": 8, "topk_grup": 2}}
    r = client.post(f"{API}/validate", json={"config": {"model": model}}, headers=auth())
    assert r.status_code == 200 and not r.json["valid"]
    assert {e["field"] for e in r.json["errors"]} == {"model.moe.topk_grup", "model.moe"}
    r = client.post(
        f"{API}/configs", json={"name": "m", "config": {"model": model}}, headers=auth()
    )
    assert r.status_code == 422 and "model.moe.topk_grup" in {e["field"] for e in r.json["errors"]}


#: The hash a Llama document had before the architecture fields existed (commit f91175a).
LLAMA_512 = {"model": {"architecture": "llama", "model_dim": 512, "num_attention_heads": 8}}
LLAMA_512_HASH = "92fd2e53cbe2e8d6710b6adbe8a30166f0c39a9ce9887de8dfca40e918fd826b"


def test_a_stored_version_keeps_its_hash_and_unset_fields_add_no_version(
    client: FlaskClient, auth
) -> None:
    h = auth("submitter")
    r = client.post(f"{API}/configs", json={"name": "old", "config": LLAMA_512}, headers=h)
    assert r.status_code == 201 and r.json["hash"] == LLAMA_512_HASH
    unset = {"num_key_value_heads": None, "tie_word_embeddings": False, "moe": {}, "mla": None}
    same = {"model": {**LLAMA_512["model"], **unset}}
    again = client.post(f"{API}/configs/old/versions", json={"config": same}, headers=h)
    assert (again.json["version"], again.json["created"]) == (1, False)
    stored = client.get(f"{API}/configs/old/versions/1", headers=h).json
    assert stored["hash"] == LLAMA_512_HASH and "moe" not in stored["config"]["model"]
    grouped = {"model": {**LLAMA_512["model"], "num_key_value_heads": 2}}
    new = client.post(f"{API}/configs/old/versions", json={"config": grouped}, headers=h)
    assert (new.json["version"], new.json["created"]) == (2, True)
