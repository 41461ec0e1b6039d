"""A database that does not answer: 503 with Retry-After (JSON for the API, the error page for a
browser), never a 500. The engine points at a real PostgreSQL URL on a port nobody listens on,
so every connection is really refused (a real server restarted: tests/cli/test_pg_restart.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from registry.db import make_engine
from registry.http.app import create_app
from registry.settings import Settings
from tests.support.procs import free_port


@pytest.fixture
def down() -> Iterator[FlaskClient]:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/registry"
    engine = make_engine(url)
    key = "test-only-session-key-never-used-outside-tests"
    settings = Settings(database_url=url, secret_key=key)
    app = create_app(settings, engine=engine)
    yield app.test_client()
    engine.dispose()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/runs"), ("GET", "/api/v1/configs"), ("POST", "/api/v1/workers/claim")],
)
def test_the_api_answers_503_with_retry_after(down: FlaskClient, method: str, path: str) -> None:
    headers = {"Authorization": "Bearer cr_not-checked-the-database-is-down"}
    answer = down.open(path, method=method, headers=headers, json={"worker": "w"})
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.headers["Retry-After"] == "5"
    body = answer.get_json()
    assert body["code"] == "database_unavailable" and body["retry_after"] == 5
    assert "database" in body["error"]


def test_a_page_answers_503_with_the_error_page(down: FlaskClient) -> None:
    with down.session_transaction() as cookie:
        cookie["sid"] = "a-session-the-database-must-look-up"
    answer = down.get("/runs", headers={"Accept": "text/html"})
    assert answer.status_code == 503
    assert answer.mimetype == "text/html" and answer.headers["Retry-After"] == "5"
    assert "database is unavailable" in answer.get_data(as_text=True)
