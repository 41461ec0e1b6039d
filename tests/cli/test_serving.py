"""``registry serve`` answers what gunicorn refuses itself in the API's JSON shape."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from registry.settings import Settings
from tests.support.procs import Server, start_server


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[Server]:
    env = {"DATABASE_URL": settings.database_url, "REGISTRY_SECRET_KEY": secrets.token_hex(32)}
    started = start_server(env, tmp_path / "server.log", workers=1)
    yield started
    started.proc.stop()


@pytest.mark.slow
def test_an_over_long_request_line_is_a_json_414(server: Server) -> None:
    answer = requests.get(f"{server.url}/api/v1/runs", params={"filter": "x" * 9000}, timeout=10)
    assert answer.status_code == 414
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["code"] == "uri_too_long"


@pytest.mark.slow
def test_too_many_header_bytes_is_a_json_431(server: Server) -> None:
    headers = {f"X-Pad-{i}": "y" * 100 for i in range(120)}
    answer = requests.get(f"{server.url}/api/v1/health", headers=headers, timeout=10)
    assert answer.status_code == 431 and answer.json()["code"] == "headers_too_large"


@pytest.mark.slow
def test_ordinary_requests_still_answer(server: Server) -> None:
    assert requests.get(f"{server.url}/api/v1/health", timeout=10).json() == {"status": "ok"}
