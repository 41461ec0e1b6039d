"""Sign-in throttling on the login form: per account and per address, across app instances."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from registry.db import make_session_factory, transaction
from registry.http.clock import set_clock
from registry.services.users import create_user
from registry.settings import Settings
from tests.support.apps import app_instance
from tests.support.clock import Clock
from tests.support.web import csrf_of

PASSWORD = "correct horse battery"
WINDOW = 900


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small limits so that a test makes few attempts: 3 per account, 5 per address."""
    return settings.with_(
        signin_failures=3, signin_address_failures=5, signin_window_seconds=WINDOW
    )


@pytest.fixture
def clock(app: Flask) -> Clock:
    """The app's clock, moved by the test."""
    clock = Clock()
    set_clock(app, clock)
    return clock


@pytest.fixture
def users(engine: Engine) -> list[str]:
    """Three submitter users with the same password."""
    names = ["ada", "bob", "cyd"]
    with transaction(make_session_factory(engine)) as s:
        for name in names:
            create_user(s, name, "submitter", PASSWORD)
    return names


def attempt(client: FlaskClient, address: str = "10.0.0.1", **form: str) -> TestResponse:
    """One sign-in post from ``address`` (the page first, for its CSRF token)."""
    env = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=env).get_data(as_text=True)
    method = "password" if "name" in form else "token"
    data = {"method": method, "csrf_token": csrf_of(page), **form}
    return client.post("/login", data=data, environ_base=env)


def password(
    client: FlaskClient, name: str, pw: str = PASSWORD, address: str = "10.0.0.1"
) -> TestResponse:
    """A password sign-in attempt."""
    return attempt(client, address, name=name, password=pw)


def assert_throttled(answer: TestResponse) -> None:
    assert answer.status_code == 429, answer.get_data(as_text=True)
    wait = int(answer.headers["Retry-After"])
    assert 0 < wait <= WINDOW
    text = answer.get_data(as_text=True)
    assert "Too many failed sign-ins" in text and 'id="login-error"' in text


def test_an_account_is_throttled_and_the_right_password_waits(
    client: FlaskClient, clock: Clock, users: list[str]
) -> None:
    for _ in range(3):
        assert password(client, "ada", "wrong password").status_code == 401
    # The right password is refused too while the account's window is full ...
    assert_throttled(password(client, "ada"))
    assert_throttled(password(client, "ada", address="10.9.9.9"))  # from any address
    # ... while another account from the same address still signs in.
    assert password(FlaskClient(client.application), "bob").status_code == 303
    clock.advance(seconds=WINDOW - 1)
    assert_throttled(password(client, "ada"))
    clock.advance(seconds=1)
    assert password(client, "ada").status_code == 303


def test_success_clears_the_account(client: FlaskClient, clock: Clock, users: list[str]) -> None:
    for _ in range(2):
        assert password(client, "ada", "wrong password").status_code == 401
    assert password(client, "ada").status_code == 303
    for _ in range(2):
        assert password(client, "ada", "wrong password", address="10.0.0.2").status_code == 401
    assert password(client, "ada", address="10.0.0.3").status_code == 303


def test_unknown_names_are_throttled_like_known_ones(
    client: FlaskClient, clock: Clock, users: list[str]
) -> None:
    for _ in range(3):
        assert password(client, "nobody", "wrong password").status_code == 401
    assert_throttled(password(client, "nobody", "wrong password"))


def test_an_address_is_throttled_across_accounts_and_tokens(
    client: FlaskClient, clock: Clock, users: list[str], tokens: dict[str, str]
) -> None:
    for name in ("ada", "bob"):
        for _ in range(2):
            assert password(client, name, "wrong password").status_code == 401
    assert attempt(client, token="cr_wrong").status_code == 401
    # Five failures from 10.0.0.1: every sign-in from it waits, right password or token.
    assert_throttled(password(client, "cyd"))
    assert_throttled(attempt(client, token=tokens["admin"]))
    assert password(client, "cyd", address="10.0.0.2").status_code == 303
    clock.advance(seconds=WINDOW)
    assert attempt(client, token=tokens["admin"]).status_code == 303


def test_bad_tokens_throttle_token_sign_in(
    client: FlaskClient, clock: Clock, tokens: dict[str, str]
) -> None:
    for _ in range(4):
        assert attempt(client, token="cr_wrong").status_code == 401
    assert attempt(client, token=tokens["worker"]).status_code == 401  # no web role: a failure
    assert_throttled(attempt(client, token=tokens["admin"]))
    clock.advance(seconds=WINDOW)
    assert attempt(client, token=tokens["admin"]).status_code == 303


@pytest.fixture
def second_app(settings: Settings, app: Flask, clock: Clock) -> Iterator[Flask]:
    """Another app on the same database URL, as another server process would be."""
    with app_instance(settings, clock) as other:
        yield other


def test_the_limit_holds_across_app_instances(
    client: FlaskClient, second_app: Flask, clock: Clock, users: list[str]
) -> None:
    clients = [client, second_app.test_client()]
    for i in range(3):
        assert password(clients[i % 2], "ada", "wrong password").status_code == 401
    assert_throttled(password(clients[0], "ada"))
    assert_throttled(password(clients[1], "ada"))
    clock.advance(seconds=WINDOW)
    assert password(clients[1], "ada").status_code == 303


def test_a_throttled_attempt_runs_no_password_hash(
    client: FlaskClient, clock: Clock, users: list[str]
) -> None:
    """Refused before scrypt: a throttled post costs a fraction of a checked one."""

    def median_seconds(pw: str, n: int = 5) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            answer = password(client, "ada", pw)
            times.append(time.perf_counter() - start)
        assert answer.status_code in (401, 429)
        return sorted(times)[n // 2]

    checked = median_seconds("wrong password", n=3)
    throttled = median_seconds(PASSWORD)
    assert password(client, "ada").status_code == 429
    assert throttled < checked / 2, (throttled, checked)


def test_forwarded_for_is_ignored_unless_proxies_are_trusted(
    client: FlaskClient, clock: Clock, users: list[str]
) -> None:
    for i in range(5):
        headers = {"X-Forwarded-For": f"192.0.2.{i}"}
        page = client.get("/login").get_data(as_text=True)
        data = {"method": "token", "token": "cr_x", "csrf_token": csrf_of(page)}
        assert client.post("/login", data=data, headers=headers).status_code == 401
    assert_throttled(password(client, "ada", address="127.0.0.1"))
