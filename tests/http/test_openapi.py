"""The OpenAPI document says what the routes parse and answer, and real answers match it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from registry.db import make_session_factory, transaction
from registry.http.api import run_schemas, schemas
from registry.http.api.openapi import API_PREFIX, UrlMapPlugin
from registry.http.params import ID_MAX
from tests.support.builders import make_version

API = "/api/v1"
Auth = Callable[..., dict[str, str]]

#: Every POST route that reads a body (the issue found seven of them with none documented).
BODY_ROUTES = {
    ("/api/v1/validate", "ValidateRequest"),
    ("/api/v1/configs", "CreateConfigRequest"),
    ("/api/v1/configs/{name}/versions", "AddVersionRequest"),
    ("/api/v1/runs", "CreateRunRequest"),
    ("/api/v1/workers/claim", "ClaimRequest"),
    ("/api/v1/workers/register", "RegisterRequest"),
    ("/api/v1/runs/{run_id}/heartbeat", "HeartbeatRequest"),
    ("/api/v1/runs/{run_id}/complete", "CompleteRequest"),
    ("/api/v1/runs/{run_id}/release", "ReleaseRequest"),
}


@pytest.fixture
def document(client: FlaskClient, auth: Auth) -> dict[str, Any]:
    answer = client.get(f"{API}/openapi.json", headers=auth("viewer"))
    assert answer.status_code == 200
    return answer.get_json()  # type: ignore[no-any-return]


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    ]


def test_every_body_is_the_model_that_parses_it(app: Flask, document: dict[str, Any]) -> None:
    paths = document["paths"]
    for path, model in BODY_ROUTES:
        body = paths[path]["post"]["requestBody"]
        assert body["required"] is True
        for ctype in ("application/json", "application/yaml"):
            assert body["content"][ctype]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    # ... and it is the very model the view parses with, for every route under /api/v1.
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        parsed = getattr(view, "body_model", None)
        if rule.rule.startswith(API_PREFIX) and parsed is not None:
            path = UrlMapPlugin.flaskpath2openapi(rule.rule)
            assert (path, parsed.__name__) in BODY_ROUTES
    schema = document["components"]["schemas"]["CreateRunRequest"]
    assert schema["additionalProperties"] is False and schema["required"] == ["config"]
    assert schema["properties"]["priority"]["maximum"] == 1000


def test_every_answer_a_route_can_give_is_documented(document: dict[str, Any]) -> None:
    for path, method, op in _operations(document):
        codes = set(op["responses"])
        where = (method, path)
        if op.get("security") != []:
            assert {"401", "403", "429"} <= codes, where
        if "requestBody" in op:
            assert {"400", "413", "422"} <= codes, where
        if "{" in path:
            assert "404" in codes, where
        assert "500" not in codes, where
        for code, answer in op["responses"].items():
            if code != "204":
                assert answer["content"]["application/json"]["schema"], (where, code)
            if code.startswith(("4", "5")):
                ref = answer["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (where, code)
    runs = document["paths"]["/api/v1/runs"]
    assert {"201", "404", "409", "422"} <= set(runs["post"]["responses"])
    assert set(document["paths"]["/api/v1/workers/claim"]["post"]["responses"]) >= {"200", "204"}


def test_list_runs_documents_its_parameters(document: dict[str, Any]) -> None:
    op = document["paths"]["/api/v1/runs"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert {"filter", "order_by", "limit", "cursor", "status", "config", "queue", "kind"} <= set(
        params
    )
    assert params["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert params["status"]["schema"]["type"] == "array"
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    run_id = document["paths"]["/api/v1/runs/{run_id}"]["parameters"][0]
    assert run_id["schema"] == {"type": "integer", "minimum": 1, "maximum": ID_MAX}


def test_links_name_operations_that_exist(document: dict[str, Any]) -> None:
    ids = {op["operationId"] for _, _, op in _operations(document)}
    links = [
        link
        for _, _, op in _operations(document)
        for answer in op["responses"].values()
        for link in answer.get("links", {}).values()
    ]
    assert len(links) >= 10 and all(link["operationId"] in ids for link in links)


def test_query_parameters_are_parsed_by_their_models(client: FlaskClient, auth: Auth) -> None:
    for query in ("limit=5.0", "limit=%205", "limit=1_0", "limit=-1", "limit=1001"):
        answer = client.get(f"{API}/runs?{query}", headers=auth("viewer"))
        assert answer.status_code == 400, query
        assert answer.get_json()["field"] == "limit"
    nul = client.get(f"{API}/runs?status=queued&status=%00", headers=auth("viewer"))
    assert nul.status_code == 400 and nul.get_json()["field"] == "status"
    for query, field in (("all=maybe", "all"), ("to=", "to"), ("from=1.5", "from")):
        odd = client.get(f"{API}/configs/x/diff?{query}", headers=auth("viewer"))
        assert odd.status_code == 422 and odd.get_json()["errors"][0]["field"] == field


def test_405_names_the_allowed_methods(client: FlaskClient, auth: Auth) -> None:
    for path, allowed in (("/runs", {"GET", "POST"}), ("/health", {"GET"})):
        answer = client.delete(f"{API}{path}", headers=auth())
        assert answer.status_code == 405
        assert allowed <= {m.strip() for m in answer.headers["Allow"].split(",")}
        assert answer.get_json()["code"] == "method_not_allowed"


def _check(document: dict[str, Any], path: str, method: str, answer: TestResponse) -> None:
    """``answer`` has a documented status and matches the schema documented for it."""
    responses = document["paths"][path][method]["responses"]
    code = str(answer.status_code)
    assert code in responses, (method, path, code, answer.get_data(as_text=True))
    if code == "204":
        return
    schema = responses[code]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
    errors = [e.message for e in validator.iter_errors(answer.get_json())]
    assert not errors, (method, path, code, errors)


def test_real_answers_match_their_schemas(
    client: FlaskClient, auth: Auth, engine: Engine, document: dict[str, Any]
) -> None:
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny", seed=7)

    def call(method: str, path: str, route: str = "", role: str = "admin", body: Any = None) -> Any:
        headers = auth(role) if role != "nobody" else {}
        answer = client.open(f"{API}{path}", method=method, json=body, headers=headers)
        _check(document, API + (route or path.split("?")[0]), method.lower(), answer)
        return answer.get_json()

    run, name = "/runs/{run_id}", "/configs/{name}"
    call("GET", "/health")
    call("POST", "/configs", body={"name": "fresh", "config": {}})
    call("POST", "/configs", body={"name": "fresh", "config": {}})  # 409
    call("POST", "/configs", body={"name": "bad name", "config": {}})  # 422
    call("POST", "/configs", body=[])  # 400
    call("GET", "/configs/tiny", name)
    call("GET", "/configs/nope", name, role="viewer")  # 404
    call("GET", "/configs/fresh/versions/1", name + "/versions/{ref}")
    call("GET", "/configs/fresh/versions/1?format=xml", name + "/versions/{ref}")  # 422
    call("POST", "/validate", body={"config": {"generation": {"top_p": 2}}})
    one = f"/runs/{call('POST', '/runs', role='submitter', body={'config': 'tiny'})['id']}"
    call("GET", "/runs?limit=5&status=queued&status=running")
    call("GET", "/runs?filter=status ~ 'x'")  # 400 with a position
    call("GET", one, run, role="worker")  # 403
    call("GET", one, run, role="nobody")  # 401
    call("POST", "/workers/register", role="worker", body={"worker": "w1", "host": "h"})
    lease = call("POST", "/workers/claim", role="worker", body={"worker": "w1"})["lease"]
    call("POST", "/workers/claim", role="worker", body={"worker": "w1"})  # 204
    call("POST", one + "/heartbeat", run + "/heartbeat", "worker", {"lease": lease})
    call("POST", one + "/heartbeat", run + "/heartbeat", "worker", {"lease": "guess"})  # 409
    report = {"lease": lease, "status": "succeeded", "metrics": {"val_loss": 1.0}}
    call("POST", one + "/complete", run + "/complete", "worker", report)
    call("POST", one + "/reproduce", run + "/reproduce", "submitter")
    call("POST", one + "/cancel", run + "/cancel", "submitter")  # 409: it already finished
    call("GET", "/workers")


def test_every_model_is_a_component(document: dict[str, Any]) -> None:
    components = set(document["components"]["schemas"])
    for module in (schemas, run_schemas):
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, (schemas.Body, schemas.Answer))
                and value.__module__ == module.__name__
                and value not in (schemas.Body, schemas.Answer)
            ):
                assert name in components, name
