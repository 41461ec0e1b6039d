"""Bodies over 1 MiB sent to a real ``registry serve`` (gunicorn) as an outsider sends them.

The Flask test client cannot send chunked framing; gunicorn decodes it and hands the app a
stream with no length, which is where a 2 MiB YAML body used to be cut to its first MiB and
stored (201) without the fields after the cut. Here the bytes go over a socket.
"""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from registry.db import Base, make_session_factory
from registry.settings import Settings
from tests.support.procs import Server, start_server

MIB = 1024 * 1024


def counts(engine: Engine) -> dict[str, int]:
    with make_session_factory(engine)() as s:
        return {
            t.name: s.scalar(select(func.count()).select_from(t)) or 0
            for t in Base.metadata.sorted_tables
        }


@pytest.fixture
def server(settings: Settings, tmp_path: Path, engine: Engine) -> Iterator[Server]:
    """``registry serve`` on the test database (SQLite and PostgreSQL)."""
    env = {"DATABASE_URL": settings.database_url, "REGISTRY_SECRET_KEY": secrets.token_hex(32)}
    started = start_server(env, tmp_path / "logs" / "server.log", workers=1)
    yield started
    started.proc.stop()


def send(server: Server, path: str, data: bytes, headers: dict[str, str], chunked: bool) -> Any:
    """POST ``data`` over a socket, as chunks of 64 KiB or with a Content-Length."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        try:
            if chunked:
                pieces = (data[i : i + 65536] for i in range(0, len(data), 65536))
                conn.request("POST", path, body=pieces, headers=headers, encode_chunked=True)
            else:
                conn.request("POST", path, body=data, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading it all: its answer is still there
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _yaml(size: int, name: str = "late") -> bytes:
    """YAML whose fields all come after a comment of ``size`` bytes."""
    return f"# {'x' * size}\nname: {name}\nmessage: the last line\nconfig: {{}}\n".encode()


def test_chunked_bodies_over_1_mib_are_413_not_cut(
    server: Server, tokens: dict[str, str], engine: Engine
) -> None:
    before = counts(engine)
    auth = {"Authorization": f"Bearer {tokens['admin']}"}
    bodies = [
        ("/api/v1/configs", _yaml(2 * MIB), "application/yaml"),
        ("/api/v1/configs", _yaml(MIB), "application/yaml"),  # just over
        (
            "/api/v1/configs",
            json.dumps({"name": "j", "x": "x" * 2 * MIB}).encode(),
            "application/json",
        ),
        ("/api/v1/configs/late/versions", _yaml(2 * MIB), "application/yaml"),
        (
            "/configs/-/new",
            b"name=late&description=" + b"x" * 2 * MIB,
            "application/x-www-form-urlencoded",
        ),
    ]
    for path, data, ctype in bodies:
        for chunked in (True, False):
            status, text = send(server, path, data, {**auth, "Content-Type": ctype}, chunked)
            assert status == 413, (path, chunked, status, text[:200])
            if path.startswith("/api/"):
                assert json.loads(text)["code"] == "payload_too_large"
    assert counts(engine) == before
    assert server.get("/health", tokens["viewer"]).status_code == 200  # still serving


def test_a_chunked_body_under_1_mib_is_stored_whole(server: Server, tokens: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {tokens['admin']}", "Content-Type": "application/yaml"}
    data = _yaml(MIB - 100, name="whole")
    assert len(data) <= MIB
    status, body = send(server, "/api/v1/configs", data, headers, chunked=True)
    assert status == 201, body[:300]
    got = server.get("/configs/whole/versions/1", tokens["viewer"]).json()
    assert got["message"] == "the last line"
