"""Strict-Transport-Security on every response when the service is told it is served over TLS
(REGISTRY_TLS=1), and never otherwise (a plain-HTTP deployment must not pin browsers)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.http.app import create_app
from registry.settings import HSTS, Settings

#: Pages, the API, static files, errors and a refused sign-in: every kind of answer.
PATHS = [
    ("GET", "/login"),
    ("GET", "/"),
    ("GET", "/static/app.css"),
    ("GET", "/no-such-page"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/configs"),  # 401 without a token
    ("POST", "/api/v1/configs"),
    ("POST", "/login"),  # refused: no CSRF token
]


def answers(client: FlaskClient) -> list[tuple[str, int, str | None]]:
    out = []
    for method, path in PATHS:
        response = client.open(path, method=method)
        out.append((path, response.status_code, response.headers.get("Strict-Transport-Security")))
    return out


def test_every_response_over_tls_carries_hsts(settings: Settings, engine: Engine) -> None:
    client = create_app(settings.with_(tls=True), engine=engine).test_client()
    seen = answers(client)
    assert {status // 100 for _, status, _ in seen} >= {2, 3, 4}
    assert [(p, h) for p, _, h in seen] == [(p, HSTS) for p, _, _ in seen]
    assert HSTS.startswith("max-age=") and int(HSTS.split("=")[1]) >= 31536000


def test_no_hsts_without_tls(client: FlaskClient) -> None:
    assert [h for _, _, h in answers(client)] == [None] * len(PATHS)


@pytest.mark.parametrize(
    ("env", "tls", "secure"),
    [
        ({}, False, True),
        ({"REGISTRY_TLS": "1"}, True, True),
        ({"REGISTRY_INSECURE_COOKIES": "1"}, False, False),
        # Over TLS the cookie is Secure whatever the other setting says.
        ({"REGISTRY_TLS": "1", "REGISTRY_INSECURE_COOKIES": "1"}, True, True),
        ({"REGISTRY_TLS": "0"}, False, True),
    ],
)
def test_the_tls_setting(env: dict[str, str], tls: bool, secure: bool) -> None:
    settings = Settings.from_env(env, env_file=None)
    assert (settings.tls, settings.secure_cookies) == (tls, secure)
