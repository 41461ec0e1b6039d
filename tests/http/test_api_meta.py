"""Health, presets, validate, schema and the generated OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from registry.document import fields, presets, spec
from registry.http.api.openapi import API_PREFIX, UrlMapPlugin

API = "/api/v1"


def test_health_needs_no_token(client: FlaskClient) -> None:
    r = client.get(f"{API}/health")
    assert r.status_code == 200 and r.json == {"status": "ok"}


def test_presets(client: FlaskClient, auth) -> None:
    listed = client.get(f"{API}/presets", headers=auth("viewer")).json["presets"]
    assert listed and all(set(p) == {"name", "description", "section"} for p in listed)
    assert [p["name"] for p in listed] == [p.name for p in presets.list_presets()]
    one = client.get(f"{API}/presets/{listed[0]['name']}", headers=auth("viewer"))
    assert one.status_code == 200
    document = one.json
    assert spec.validate(document).valid
    assert document == presets.get_preset(listed[0]["name"]).document
    assert client.get(f"{API}/presets/no-such-preset", headers=auth()).status_code == 404


def test_validate_valid_and_invalid_are_200(client: FlaskClient, auth) -> None:
    ok = client.post(f"{API}/validate", json={"config": {}}, headers=auth("viewer"))
    assert ok.status_code == 200
    body = ok.json
    assert set(body) >= {"valid", "errors", "warnings", "normalized", "hash", "estimate"}
    assert body["valid"] is True and body["hash"] == spec.config_hash(spec.normalize({}))
    assert {"parameters", "vocab_size", "intermediate_size", "peak_memory_gb"} <= set(
        body["estimate"]
    )

    bad = client.post(
        f"{API}/validate",
        json={"config": {"generation": {"top_p": 1.5}, "modle": {}}},
        headers=auth("viewer"),
    )
    assert bad.status_code == 200 and bad.json["valid"] is False
    fields = [e["field"] for e in bad.json["errors"]]
    assert "generation.top_p" in fields and any(f.startswith("modle") for f in fields)


def test_validate_accepts_text_and_yaml_bodies(client: FlaskClient, auth) -> None:
    r = client.post(
        f"{API}/validate", json={"config": "generation:\n  temperature: 1.5\n"}, headers=auth()
    )
    assert r.status_code == 200 and r.json["valid"]
    assert "generation.temperature" in [w["field"] for w in r.json["warnings"]]
    y = client.post(
        f"{API}/validate",
        data="config:\n  training:\n    learning_rate: 1.0e-3\n",
        content_type="application/yaml",
        headers=auth(),
    )
    assert y.status_code == 200 and y.json["valid"]
    assert "training.learning_rate" in [w["field"] for w in y.json["warnings"]]


def test_schema(client: FlaskClient, auth) -> None:
    r = client.get(f"{API}/schema", headers=auth("viewer"))
    assert r.status_code == 200 and r.json == fields.json_schema()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_describes_every_route(app: Flask, client: FlaskClient, auth) -> None:
    r = client.get(f"{API}/openapi.json", headers=auth("viewer"))
    assert r.status_code == 200
    document = r.json
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        path = UrlMapPlugin.flaskpath2openapi(rule.rule)
        assert path in paths, path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = paths[path][method.lower()]
            assert op["summary"] and op["responses"], (path, method)
        for arg in rule.arguments:
            assert arg in [p["name"] for p in paths[path].get("parameters", [])], (path, arg)
    # Every $ref resolves to a component.
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    # Security comes from the code: health is open, the rest need a token.
    assert paths["/api/v1/health"]["get"]["security"] == []
    create = paths["/api/v1/configs"]["post"]
    assert "security" not in create and "401" in create["responses"]
    assert create["x-capability"] == "write"
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/CreateConfigRequest"}
    assert {"name", "config"} <= set(schemas["CreateConfigRequest"]["required"])
