"""Failed bearer tokens: counted per client address across app instances, then 429."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from registry.http.clock import set_clock
from registry.settings import Settings
from tests.support.apps import app_instance
from tests.support.clock import Clock

URL = "/api/v1/configs"
WINDOW = 600


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Four bad tokens per address in ten minutes."""
    return settings.with_(bearer_failures=4, signin_window_seconds=WINDOW)


@pytest.fixture
def clock(app: Flask) -> Clock:
    """The app's clock, moved by the test."""
    clock = Clock()
    set_clock(app, clock)
    return clock


def get(
    client: FlaskClient, token: str | None, address: str = "10.0.0.1", **headers: str
) -> TestResponse:
    """GET the config list with ``token`` from ``address``."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get(URL, headers=headers, environ_base={"REMOTE_ADDR": address})


def assert_throttled(answer: TestResponse) -> None:
    assert answer.status_code == 429, answer.json
    assert answer.json["code"] == "throttled"
    wait = int(answer.headers["Retry-After"])
    assert 0 < wait <= WINDOW and answer.json["retry_after"] == wait


def test_bad_tokens_are_throttled_per_address(
    client: FlaskClient, clock: Clock, tokens: dict[str, str]
) -> None:
    for _ in range(4):
        assert get(client, "cr_guess").status_code == 401
    assert_throttled(get(client, "cr_another_guess"))
    assert get(client, "cr_guess", address="10.0.0.2").status_code == 401
    # A valid token is never refused: nobody guesses one, and workers share addresses.
    assert get(client, tokens["viewer"]).status_code == 200
    clock.advance(seconds=WINDOW - 1)
    assert_throttled(get(client, "cr_guess"))
    clock.advance(seconds=1)
    assert get(client, "cr_guess").status_code == 401


def test_a_revoked_token_counts_as_bad(
    client: FlaskClient, clock: Clock, tokens: dict[str, str]
) -> None:
    from click.testing import CliRunner

    from registry.cli.main import main

    settings = client.application.extensions["registry"].settings
    env = {"DATABASE_URL": settings.database_url}
    revoked = CliRunner().invoke(main, ["token", "revoke", "test-viewer"], env=env)
    assert revoked.exit_code == 0, revoked.output
    for _ in range(4):
        assert get(client, tokens["viewer"]).status_code == 401
    assert_throttled(get(client, tokens["viewer"]))


def test_no_token_is_not_counted(client: FlaskClient, clock: Clock) -> None:
    for _ in range(8):
        assert get(client, None).status_code == 401
    assert get(client, "cr_guess").status_code == 401


@pytest.fixture
def second_app(settings: Settings, app: Flask, clock: Clock) -> Iterator[Flask]:
    """Another app on the same database URL, as another server process would be."""
    with app_instance(settings, clock) as other:
        yield other


def test_the_limit_holds_across_app_instances(client: FlaskClient, second_app: Flask) -> None:
    clients = [client, second_app.test_client()]
    for i in range(4):
        assert get(clients[i % 2], "cr_guess").status_code == 401
    assert_throttled(get(clients[0], "cr_guess"))
    assert_throttled(get(clients[1], "cr_guess"))


@pytest.mark.parametrize("hops", [0, 1])
def test_forwarded_for_counts_only_behind_trusted_proxies(
    settings: Settings, client: FlaskClient, clock: Clock, hops: int
) -> None:
    with app_instance(settings.with_(trusted_proxies=hops), clock) as app:
        proxied = app.test_client()

        def via_proxy(forwarded: str) -> int:
            headers = {"Authorization": "Bearer cr_guess", "X-Forwarded-For": forwarded}
            return proxied.get(URL, headers=headers).status_code

        # What a client prepends changes nothing; only the entry our proxy added counts.
        for i in range(4):
            assert via_proxy(f"spoofed-{i}, 192.0.2.1") == 401
        assert via_proxy("spoofed-9, 192.0.2.1") == 429
        # Without a trusted proxy the header is the client's to invent, and ignored.
        assert via_proxy("192.0.2.2") == (401 if hops else 429)
