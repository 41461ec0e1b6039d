"""Web sessions end on sign-out, password change, token revoke and user disable: next request."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from registry.cli.main import main
from registry.db import make_session_factory, transaction
from registry.http.clock import set_clock
from registry.models import Token, WebSession
from registry.services.users import create_user
from registry.settings import Settings
from tests.support.apps import app_instance
from tests.support.clock import Clock
from tests.support.web import csrf_of, sign_in

PASSWORD = "correct horse battery"
COOKIE = "registry_session"


def signed_in(client: FlaskClient) -> bool:
    """Whether ``client``'s cookie still opens a page (else: redirected to sign in)."""
    answer = client.get("/configs")
    assert answer.status_code in (200, 302), answer.status_code
    return answer.status_code == 200


def sign_in_with_password(client: FlaskClient, name: str, password: str = PASSWORD) -> int:
    """Sign in through the form; the answer's status."""
    page = client.get("/login").get_data(as_text=True)
    data = {"method": "password", "name": name, "password": password}
    return client.post("/login", data={**data, "csrf_token": csrf_of(page)}).status_code


def cookie(client: FlaskClient) -> str:
    """The session cookie's value."""
    found = client.get_cookie(COOKIE)
    assert found is not None
    return found.value


def copy_of(client: FlaskClient, value: str) -> FlaskClient:
    """Another browser holding a copy of a session cookie."""
    other = client.application.test_client()
    other.set_cookie(COOKIE, value)
    return other


@pytest.fixture
def registry_cli(db_url: str) -> Callable[..., str]:
    """``registry_cli(*args)`` runs the ``registry`` command on the test database."""

    def run(*args: str, code: int = 0) -> str:
        answer = CliRunner().invoke(
            main, list(args), env={"DATABASE_URL": db_url, "REGISTRY_NEW_PASSWORD": "a new one!"}
        )
        assert answer.exit_code == code, answer.output
        return answer.output

    return run


@pytest.fixture
def ada(engine: Engine) -> str:
    """A submitter user."""
    with transaction(make_session_factory(engine)) as s:
        create_user(s, "ada", "submitter", PASSWORD)
    return "ada"


def test_sign_out_ends_the_session_and_its_copies(client: FlaskClient, tokens) -> None:
    sign_in(client, tokens["admin"])
    copied = copy_of(client, cookie(client))
    assert signed_in(copied)
    page = client.get("/configs").get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
    assert not signed_in(client)
    assert not signed_in(copied)  # a cookie copied before sign-out is worth nothing after


def test_password_change_ends_every_session(
    client: FlaskClient, ada: str, registry_cli: Callable[..., str]
) -> None:
    assert sign_in_with_password(client, ada) == 303
    other = client.application.test_client()
    assert sign_in_with_password(other, ada) == 303
    assert signed_in(client) and signed_in(other)
    registry_cli("user", "password", "--name", ada)
    assert not signed_in(client) and not signed_in(other)
    assert sign_in_with_password(client, ada) == 401
    assert sign_in_with_password(client, ada, "a new one!") == 303


def test_token_revoke_ends_its_sessions_and_its_api_use(
    client: FlaskClient, tokens, auth, registry_cli: Callable[..., str]
) -> None:
    sign_in(client, tokens["submitter"])
    bystander = client.application.test_client()
    sign_in(bystander, tokens["admin"])
    assert client.get("/api/v1/configs", headers=auth("submitter")).status_code == 200
    out = registry_cli("token", "revoke", "test-submitter")
    assert "revoked 1 token" in out
    assert not signed_in(client)
    assert client.get("/api/v1/configs", headers=auth("submitter")).status_code == 401
    assert signed_in(bystander)  # another token's session is untouched
    page = client.get("/login").get_data(as_text=True)
    data = {"method": "token", "token": tokens["submitter"], "csrf_token": csrf_of(page)}
    assert client.post("/login", data=data).status_code == 401


def test_token_revoke_names_every_token_of_that_name(
    engine: Engine, registry_cli: Callable[..., str]
) -> None:
    for _ in range(2):
        registry_cli("token", "create", "--name", "ci", "--role", "viewer")
    assert "revoked 2 token(s)" in registry_cli("token", "revoke", "ci")
    with make_session_factory(engine)() as s:
        assert all(t.revoked_at for t in s.scalars(select(Token).where(Token.name == "ci")))
    out = registry_cli("token", "revoke", "ci", code=1)
    assert "no live token named 'ci'" in out
    registry_cli("token", "revoke", "nobody", code=1)


def test_user_disable_ends_sessions_and_sign_in_until_enabled(
    client: FlaskClient, ada: str, registry_cli: Callable[..., str]
) -> None:
    assert sign_in_with_password(client, ada) == 303
    registry_cli("user", "disable", ada)
    assert not signed_in(client)
    assert sign_in_with_password(client, ada) == 401
    registry_cli("user", "enable", ada)
    assert sign_in_with_password(client, ada) == 303
    assert signed_in(client)
    assert "no user 'nobody'" in registry_cli("user", "disable", "nobody", code=1)


def test_sessions_expire(app: Flask, client: FlaskClient, tokens) -> None:
    clock = Clock()
    set_clock(app, clock)
    sign_in(client, tokens["viewer"])
    clock.advance(hours=11, minutes=59)
    assert signed_in(client)
    clock.advance(minutes=1)
    assert not signed_in(client)


def test_a_cookie_naming_a_token_id_is_not_a_session(
    engine: Engine, client: FlaskClient, tokens
) -> None:
    """The old cookie shape (who = token id, valid 12 h whatever happened) opens nothing."""
    with make_session_factory(engine)() as s:
        token_id = s.scalar(select(Token.id).where(Token.name == "test-admin"))
    with client.session_transaction() as cookie_session:
        cookie_session["who"] = {"kind": "token", "id": token_id}
    assert not signed_in(client)
    with client.session_transaction() as cookie_session:
        cookie_session["sid"] = "a guess"
    assert not signed_in(client)


def test_only_the_secret_hash_is_stored(engine: Engine, client: FlaskClient, tokens) -> None:
    sign_in(client, tokens["viewer"])
    with client.session_transaction() as cookie_session:
        secret = cookie_session["sid"]
    with make_session_factory(engine)() as s:
        rows = s.scalars(select(WebSession)).all()
    assert len(rows) == 1 and rows[0].secret_hash != secret and len(rows[0].secret_hash) == 64
    assert secret not in str(tokens)


def test_signing_out_on_one_instance_ends_the_session_on_another(
    settings: Settings, client: FlaskClient, tokens
) -> None:
    sign_in(client, tokens["admin"])
    with app_instance(settings) as other_app:
        other = other_app.test_client()
        other.set_cookie(COOKIE, cookie(client))
        assert signed_in(other)
        page = client.get("/configs").get_data(as_text=True)
        client.post("/logout", data={"csrf_token": csrf_of(page)})
        assert not signed_in(other)


def test_signing_in_again_ends_the_session_before(client: FlaskClient, tokens) -> None:
    sign_in(client, tokens["viewer"])
    before = copy_of(client, cookie(client))
    sign_in(client, tokens["admin"])
    assert signed_in(client) and not signed_in(before)
