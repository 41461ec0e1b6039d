"""The config routes over HTTP, on both backends."""

from __future__ import annotations

import json
from typing import Any

import yaml
from flask.testing import FlaskClient

from registry.document import spec

API = "/api/v1"


def doc(lr: float = 3e-5, **training: Any) -> dict[str, Any]:
    return {"training": {"learning_rate": lr, **training}}


def create(client: FlaskClient, headers: dict[str, str], name: str = "tiny", **body: Any) -> Any:
    body.setdefault("config", doc())
    return client.post(f"{API}/configs", json={"name": name, **body}, headers=headers)


def test_create_config(client: FlaskClient, auth) -> None:
    r = create(client, auth("submitter"), description="tiny model", message="first")
    assert r.status_code == 201, r.json
    body = r.json
    assert body["name"] == "tiny" and body["version"] == 1 and body["created"] is True
    assert body["hash"] == spec.config_hash(spec.normalize(doc()))
    assert body["warnings"] == []


def test_create_reports_warnings(client: FlaskClient, auth) -> None:
    r = create(client, auth(), config={"generation": {"temperature": 1.5}})
    assert r.status_code == 201
    assert "generation.temperature" in [w["field"] for w in r.json["warnings"]]
    assert all(set(w) >= {"field", "message"} for w in r.json["warnings"])


def test_create_existing_name_is_409(client: FlaskClient, auth) -> None:
    assert create(client, auth()).status_code == 201
    r = create(client, auth(), config=doc(4e-5))
    assert r.status_code == 409
    assert r.json["code"] == "conflict" and "exists" in r.json["error"]


def test_invalid_config_is_422_with_fields(client: FlaskClient, auth) -> None:
    r = create(client, auth(), config={"model": {"model_dim": 100, "num_attention_heads": 8}})
    assert r.status_code == 422
    assert r.json["code"] == "invalid"
    assert r.json["errors"] and all(set(e) >= {"field", "message"} for e in r.json["errors"])
    assert client.get(f"{API}/configs", headers=auth()).json["configs"] == []


def test_bad_name_is_422_naming_the_field(client: FlaskClient, auth) -> None:
    for name in ["", "a b", "x" * 201, "../x", "日本"]:
        r = create(client, auth(), name=name)
        assert r.status_code == 422, name
        assert [e["field"] for e in r.json["errors"]] == ["name"]


def test_add_version_and_dedupe(client: FlaskClient, auth) -> None:
    h = auth("submitter")
    create(client, h, config=doc(1e-5))
    r = client.post(
        f"{API}/configs/tiny/versions", json={"config": doc(2e-5), "message": "up"}, headers=h
    )
    assert r.status_code == 201
    assert (r.json["version"], r.json["created"], r.json["parent_version"]) == (2, True, 1)
    same = client.post(f"{API}/configs/tiny/versions", json={"config": doc(1e-5)}, headers=h)
    assert same.status_code == 200
    assert (same.json["version"], same.json["created"]) == (1, False)
    branch = client.post(
        f"{API}/configs/tiny/versions",
        json={"config": doc(4e-5), "parent_version": 1},
        headers=h,
    )
    assert branch.status_code == 201 and branch.json["parent_version"] == 1
    missing = client.post(f"{API}/configs/nope/versions", json={"config": doc()}, headers=h)
    assert missing.status_code == 404


def test_list_and_detail(client: FlaskClient, auth) -> None:
    h = auth()
    create(client, h, name="b", config=doc(1e-5), description="B")
    client.post(f"{API}/configs/b/versions", json={"config": doc(2e-5), "message": "m"}, headers=h)
    create(client, h, name="a")
    listed = client.get(f"{API}/configs", headers=auth("viewer")).json["configs"]
    assert [c["name"] for c in listed] == ["a", "b"]
    b = listed[1]
    assert b["description"] == "B" and b["latest_version"] == 2 and b["version_count"] == 2
    assert len(b["latest_hash"]) == 64 and b["created_at"]
    detail = client.get(f"{API}/configs/b", headers=auth("viewer")).json
    assert detail["name"] == "b" and detail["latest_version"] == 2
    versions = detail["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert set(versions[1]) == {
        "version",
        "hash",
        "message",
        "created_by",
        "created_at",
        "parent_version",
    }
    assert versions[1]["message"] == "m" and versions[1]["parent_version"] == 1
    assert versions[1]["created_by"] == "test-admin"
    assert client.get(f"{API}/configs/nope", headers=h).status_code == 404


def test_get_version_and_export(client: FlaskClient, auth) -> None:
    h = auth("viewer")
    create(client, auth(), config={"generation": {"temperature": 1.5}}, message="hot")
    r = client.get(f"{API}/configs/tiny/versions/1", headers=h)
    assert r.status_code == 200
    body = r.json
    assert {
        "name",
        "version",
        "hash",
        "config",
        "message",
        "created_at",
        "parent_version",
        "created_by",
        "warnings",
    } <= set(body)
    assert body["config"] == spec.normalize({"generation": {"temperature": 1.5}})
    assert body["message"] == "hot" and body["warnings"]
    assert client.get(f"{API}/configs/tiny/versions/latest", headers=h).json == body

    y = client.get(f"{API}/configs/tiny/versions/1?format=yaml", headers=h)
    assert y.status_code == 200 and y.mimetype == "text/yaml"
    assert yaml.safe_load(y.get_data(as_text=True)) == body["config"]
    j = client.get(f"{API}/configs/tiny/versions/1?format=json", headers=h)
    assert j.json == body["config"]
    assert spec.config_hash(j.json) == body["hash"]

    assert client.get(f"{API}/configs/tiny/versions/2", headers=h).status_code == 404
    assert client.get(f"{API}/configs/tiny/versions/x", headers=h).status_code == 422
    assert client.get(f"{API}/configs/tiny/versions/1?format=xml", headers=h).status_code == 422


def test_diff(client: FlaskClient, auth) -> None:
    h = auth()
    create(client, h, config=doc(3e-5))
    client.post(f"{API}/configs/tiny/versions", json={"config": doc(5e-5)}, headers=h)
    r = client.get(f"{API}/configs/tiny/diff?from=1&to=2", headers=auth("viewer"))
    assert r.status_code == 200
    assert r.json["changes"] == [{"field": "training.learning_rate", "from": 3e-5, "to": 5e-5}]
    assert (r.json["from"], r.json["to"]) == (1, 2)
    default = client.get(f"{API}/configs/tiny/diff", headers=h).json
    assert default["changes"] == r.json["changes"]
    every = client.get(f"{API}/configs/tiny/diff?from=1&to=2&all=1", headers=h).json
    assert len(every["changes"]) > 1
    assert client.get(f"{API}/configs/tiny/diff?from=1&to=9", headers=h).status_code == 404


def test_yaml_body_import(client: FlaskClient, auth) -> None:
    text = yaml.safe_dump({"name": "from-yaml", "message": "yaml", "config": doc(2e-5)})
    r = client.post(f"{API}/configs", data=text, content_type="application/yaml", headers=auth())
    assert r.status_code == 201, r.json
    stored = client.get(f"{API}/configs/from-yaml/versions/1", headers=auth()).json
    assert stored["config"] == spec.normalize(doc(2e-5)) and stored["message"] == "yaml"


def test_config_as_text(client: FlaskClient, auth) -> None:
    as_yaml = "training:\n  learning_rate: 2.0e-5  # a comment\n"
    r = create(client, auth(), config=as_yaml)
    assert r.status_code == 201, r.json
    as_json = json.dumps(doc(2e-5))
    again = client.post(f"{API}/configs/tiny/versions", json={"config": as_json}, headers=auth())
    assert again.status_code == 200 and again.json["created"] is False
    bad = client.post(
        f"{API}/configs/tiny/versions", json={"config": "training: [1,"}, headers=auth()
    )
    assert bad.status_code == 400 and bad.json["line"] >= 1 and "column" in bad.json
