"""``GET /api/v1/datasets`` (CONTRACT 5.4), on SQLite and PostgreSQL (the app fixtures)."""

from __future__ import annotations

import jsonschema_rs
from flask import Flask
from flask.testing import FlaskClient

from registry.document import datasets, spec
from registry.http.api.openapi import openapi_document

API = "/api/v1"


def test_every_role_lists_the_builtins_and_their_tasks(client: FlaskClient, auth) -> None:
    for role in ("viewer", "submitter", "admin", "worker"):  # any role (CONTRACT 5.4)
        r = client.get(f"{API}/datasets", headers=auth(role))
        assert r.status_code == 200, role
        assert r.json == {"datasets": [d.to_dict() for d in datasets.BUILTINS]}
    listed = r.get_json()["datasets"]
    assert all(set(d) == {"name", "tasks", "description"} for d in listed)
    assert all(d["name"].startswith("builtin:") and d["description"] for d in listed)
    served = {t for d in listed for t in d["tasks"]}
    assert {"causal_lm", "classification", "multimodal_matching"} <= served
    assert client.get(f"{API}/datasets").status_code == 401


def test_each_listed_dataset_validates_for_its_tasks_only(client: FlaskClient, auth) -> None:
    listed = client.get(f"{API}/datasets", headers=auth("viewer")).get_json()["datasets"]
    for d in listed:
        for task in datasets.TASKS:
            result = spec.validate({"task": task, "data": {"dataset": d["name"]}})
            fields = {e.field for e in result.errors}
            assert ("data.dataset" in fields) == (task not in d["tasks"]), (d, task)


def test_the_answer_matches_its_openapi_schema(app: Flask, client: FlaskClient, auth) -> None:
    with app.app_context():
        document = openapi_document(app)
    op = document["paths"][f"{API}/datasets"]["get"]
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/DatasetList"}
    validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
    answer = client.get(f"{API}/datasets", headers=auth("viewer")).get_json()
    assert not [e.message for e in validator.iter_errors(answer)]
    assert list(validator.iter_errors({"datasets": [{"name": 1}]}))  # the schema can fail
