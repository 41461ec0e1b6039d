"""Tokens and roles: 401 without a valid token, 403 for the wrong role, on every route."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from werkzeug.routing import Rule
from werkzeug.routing.converters import NumberConverter

from registry.db import make_session_factory, utcnow
from registry.errors import BadRequest, NotFound
from registry.models import Token, WebSession
from registry.services import websessions
from registry.services.auth import CAPABILITIES, create_token, hash_token, revoke_tokens

API = "/api/v1"
ROLES = ("admin", "submitter", "viewer", "worker")


def guarded_routes(app: Flask) -> Iterator[tuple[str, str, str]]:
    """(method, url, capability) for every route under /api/v1 that needs a token."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        capability = getattr(view, "required_capability", None)
        if not rule.rule.startswith(API) or capability is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, _url(rule), capability


def _url(rule: Rule) -> str:
    """The rule with 1 for its integer arguments and ``x`` for the others."""

    def value(match: re.Match[str]) -> str:
        numeric = isinstance(rule._converters[match.group(1)], NumberConverter)
        return "1" if numeric else "x"

    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", value, rule.rule)


def test_every_guarded_route_needs_a_valid_token(app: Flask, client: FlaskClient, tokens) -> None:
    routes = list(guarded_routes(app))
    assert len(routes) >= 10
    for method, url, _ in routes:
        for headers in (
            {},
            {"Authorization": "Bearer cr_nope"},
            {"Authorization": "Basic abc"},
            {"Authorization": f"Token {tokens['admin']}"},
        ):
            r = client.open(url, method=method, headers=headers, json={})
            assert r.status_code == 401, (method, url, headers, r.json)
            assert r.json["code"] == "unauthorized"


def test_roles_on_every_route(app: Flask, client: FlaskClient, auth) -> None:
    for method, url, capability in guarded_routes(app):
        for role in ROLES:
            r = client.open(url, method=method, headers=auth(role), json={})
            if capability in CAPABILITIES[role]:
                assert r.status_code not in (401, 403), (role, method, url, r.json)
            else:
                assert r.status_code == 403, (role, method, url, r.json)
                assert r.json["code"] == "forbidden"


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [("admin", 200, 201), ("submitter", 200, 201), ("viewer", 200, 403), ("worker", 403, 403)],
)
def test_config_role_matrix(client: FlaskClient, auth, role: str, read: int, write: int) -> None:
    h = auth(role)
    assert client.get(f"{API}/configs", headers=h).status_code == read
    created = client.post(f"{API}/configs", json={"name": "n", "config": {}}, headers=h)
    assert created.status_code == write
    assert client.post(f"{API}/validate", json={"config": {}}, headers=h).status_code == read


def test_tokens_are_hashed_at_rest(engine: Engine, tokens: dict[str, str]) -> None:
    with make_session_factory(engine)() as s:
        stored = s.scalars(select(Token.token_hash)).all()
    assert hash_token(tokens["admin"]) in stored
    assert not any(t in stored for t in tokens.values())


def test_revoked_token_is_401(engine: Engine, client: FlaskClient, tokens, auth) -> None:
    assert client.get(f"{API}/configs", headers=auth("viewer")).status_code == 200
    with make_session_factory(engine)() as s:
        s.execute(
            update(Token)
            .where(Token.token_hash == hash_token(tokens["viewer"]))
            .values(revoked_at=utcnow())
        )
        s.commit()
    assert client.get(f"{API}/configs", headers=auth("viewer")).status_code == 401


def test_create_token_checks_role_and_name(engine: Engine) -> None:
    with make_session_factory(engine)() as s:
        with pytest.raises(BadRequest):
            create_token(s, "x", "root")
        with pytest.raises(BadRequest):
            create_token(s, "", "viewer")
        secret = create_token(s, "ok", "viewer")
        assert secret.startswith("cr_") and len(secret) > 40


def test_revoke_tokens_ends_their_web_sessions(session: Session) -> None:
    now, hour = utcnow(), dt.timedelta(hours=1)
    for name in ("ci", "ci", "other"):
        create_token(session, name, "viewer")
    rows = session.scalars(select(Token).order_by(Token.id)).all()
    opened = [
        websessions.open_session(session, now=now, lifetime=hour, token_id=t.id) for t in rows
    ]
    assert revoke_tokens(session, "ci", now) == [rows[0].id, rows[1].id]
    live = [websessions.live_session(session, secret, now) is not None for secret in opened]
    assert live == [False, False, True]
    ended = select(WebSession.ended_at).where(WebSession.token_id == rows[0].id)
    assert session.scalar(ended) == now
    with pytest.raises(NotFound):
        revoke_tokens(session, "ci", now)  # none of that name is live any more
