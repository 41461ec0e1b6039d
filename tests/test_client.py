"""The HTTP client against the real app (through a requests adapter), typed errors, retries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
import yaml
from flask import Flask
from requests.adapters import BaseAdapter

from registry import errors
from registry.client import Client, error_for
from registry.document import spec


class FlaskAdapter(BaseAdapter):
    """Sends requests to a Flask app's test client instead of the network."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.client = app.test_client()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = request.url or ""
        path = url.split("://", 1)[1].split("/", 1)[1]
        answer = self.client.open(
            "/" + path, method=request.method, data=request.body, headers=dict(request.headers)
        )
        return _response(request, answer.status_code, answer.get_data(), dict(answer.headers))

    def close(self) -> None:
        pass


class ScriptedAdapter(BaseAdapter):
    """Answers from a script: each item a status code or an exception to raise."""

    def __init__(self, script: list[int | Exception]) -> None:
        super().__init__()
        self.script = list(script)
        self.calls = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        body = b'{"status": "ok"}' if step < 400 else b'{"error": "boom", "code": "internal"}'
        return _response(request, step, body, {"Content-Type": "application/json"})

    def close(self) -> None:
        pass


def _response(request: Any, status: int, body: bytes, headers: dict[str, str]) -> Any:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers)
    response.request = request
    response.url = request.url
    return response


def client_for(adapter: BaseAdapter, token: str | None = None, **kw: Any) -> Client:
    session = requests.Session()
    session.mount("http://", adapter)
    return Client("http://registry.test", token, session=session, **kw)


@pytest.fixture
def api(app: Flask, tokens: dict[str, str]) -> Callable[[str], Client]:
    """``api(role)`` -> a Client talking to the test app with that role's token."""
    return lambda role="admin": client_for(FlaskAdapter(app), tokens[role])


def test_config_calls(api) -> None:
    c = api("submitter")
    assert c.health() == {"status": "ok"}
    checked = c.validate({"generation": {"temperature": 1.5}})
    assert checked["valid"] and checked["warnings"]
    first = c.create_config("tiny", {"training": {"learning_rate": 3e-5}}, description="d")
    assert (first["version"], first["created"]) == (1, True)
    second = c.add_version("tiny", "training:\n  learning_rate: 5.0e-5\n", message="up")
    assert (second["version"], second["created"]) == (2, True)
    assert c.submit("tiny", {"training": {"learning_rate": 3e-5}})["created"] is False
    assert c.submit("fresh", {})["version"] == 1
    assert [x["name"] for x in c.list_configs()] == ["fresh", "tiny"]
    assert [v["version"] for v in c.get_config("tiny")["versions"]] == [1, 2]
    assert c.get_version("tiny")["version"] == 2
    assert c.get_version("tiny", 1)["message"] is None
    exported = yaml.safe_load(c.export("tiny", 1))
    assert exported == spec.normalize({"training": {"learning_rate": 3e-5}})
    assert (
        spec.parse_document(c.export("tiny", "latest", "json"), "json")["training"]["learning_rate"]
        == 5e-5
    )
    changes = c.diff("tiny", 1, 2)["changes"]
    assert changes == [{"field": "training.learning_rate", "from": 3e-5, "to": 5e-5}]


def test_typed_errors_carry_the_server_message(api, app: Flask) -> None:
    c = api("submitter")
    with pytest.raises(errors.NotFound, match="no config named 'nope'"):
        c.get_config("nope")
    c.create_config("tiny", {})
    with pytest.raises(errors.Conflict, match="already exists"):
        c.create_config("tiny", {})
    with pytest.raises(errors.InvalidConfig) as invalid:
        c.add_version("tiny", {"model": {"model_dim": 100, "num_attention_heads": 8}})
    assert invalid.value.status == 422 and invalid.value.extra["errors"]
    with pytest.raises(errors.InvalidInput) as bad_name:
        c.create_config("a b", {})
    assert bad_name.value.extra["errors"][0]["field"] == "name"
    assert not isinstance(bad_name.value, errors.InvalidConfig)
    with pytest.raises(errors.DocumentParseError) as parse:
        c.add_version("tiny", "training: [1,")
    assert parse.value.extra["line"] >= 1
    with pytest.raises(errors.Forbidden):
        api("viewer").create_config("x", {})
    with pytest.raises(errors.Unauthorized):
        client_for(FlaskAdapter(app)).list_configs()


def test_error_for_unknown_shapes() -> None:
    err = error_for(502, "<html>bad gateway</html>")
    assert type(err) is errors.RegistryError and err.status == 502 and "bad gateway" in err.message
    assert isinstance(error_for(409, {"error": "late", "code": "stale_lease"}), errors.StaleLease)
    assert isinstance(error_for(418, {"error": "teapot"}), errors.RegistryError)


def test_idempotent_calls_retry_5xx_and_connection_errors() -> None:
    sleeps: list[float] = []
    adapter = ScriptedAdapter([503, requests.ConnectionError("refused"), 200])
    c = client_for(adapter, sleep=sleeps.append, backoff=0.5)
    assert c.health() == {"status": "ok"}
    assert adapter.calls == 3 and sleeps == [0.5, 1.0]


def test_retries_run_out() -> None:
    sleeps: list[float] = []
    c = client_for(ScriptedAdapter([500] * 3), sleep=sleeps.append, retries=2)
    with pytest.raises(errors.RegistryError) as info:
        c.get_config("x")
    assert info.value.status == 500 and info.value.message == "boom" and len(sleeps) == 2
    down = client_for(
        ScriptedAdapter([requests.ConnectionError("x")] * 3), sleep=sleeps.append, retries=2
    )
    with pytest.raises(errors.Unavailable):
        down.health()


def test_non_idempotent_posts_are_not_retried() -> None:
    adapter = ScriptedAdapter([503, 200])
    c = client_for(adapter, sleep=lambda s: None)
    with pytest.raises(errors.RegistryError):
        c.create_config("x", {})
    assert adapter.calls == 1
    refused = ScriptedAdapter([requests.ConnectionError("x"), 200])
    with pytest.raises(errors.Unavailable):
        client_for(refused, sleep=lambda s: None).request("POST", "/api/v1/runs", json={})
    assert refused.calls == 1


def test_a_closed_port_is_unavailable() -> None:
    c = Client("http://127.0.0.1:9", "t", retries=1, sleep=lambda s: None, timeout=2)
    with pytest.raises(errors.Unavailable, match="cannot reach"):
        c.health()


def test_a_token_pasted_with_a_newline_is_a_clear_error_not_a_traceback() -> None:
    with pytest.raises(errors.BadRequest, match="REGISTRY_TOKEN"):
        Client("http://127.0.0.1:1", "cr_abc\nexport REGISTRY_TOKEN=cr_abc")
    assert Client("http://127.0.0.1:1", " cr_abc\n").session.headers["Authorization"] == (
        "Bearer cr_abc"
    )
