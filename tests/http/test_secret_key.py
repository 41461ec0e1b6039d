"""The app never signs sessions with a key an outsider could know.

The attack: sign ``{"who": {"kind": "token", "id": 1}}`` (or any session) with the key the
project once shipped as its default and present it as the session cookie.
"""

from __future__ import annotations

import hashlib

import pytest
from flask import Flask, request
from flask.json.tag import TaggedJSONSerializer
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import Engine

from registry.http.app import create_app
from registry.settings import SHIPPED_SECRET_KEYS, Settings, WeakSecretKey


def forged_cookie(key: str) -> str:
    """A Flask session cookie signed with ``key``, as itsdangerous makes it."""
    serializer = URLSafeTimedSerializer(
        key,
        salt="cookie-session",
        serializer=TaggedJSONSerializer(),
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    )
    return serializer.dumps({"who": {"kind": "token", "id": 1}, "sid": "x"})


@pytest.mark.parametrize(
    "key", [None, "", "   ", "short-key", "dev-insecure-change-me", "ab" * 20, *SHIPPED_SECRET_KEYS]
)
def test_create_app_refuses_a_weak_key(settings: Settings, engine: Engine, key: str | None) -> None:
    with pytest.raises(WeakSecretKey, match="REGISTRY_SECRET_KEY"):
        create_app(settings.with_(secret_key=key), engine=engine)


def test_settings_have_no_default_key() -> None:
    assert Settings().secret_key is None
    assert Settings.from_env({}, env_file=None).secret_key is None
    assert Settings.from_env({"REGISTRY_SECRET_KEY": ""}, env_file=None).secret_key is None


def test_a_cookie_signed_with_a_shipped_default_is_not_a_session(app: Flask) -> None:
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    interface = app.session_interface
    for key in SHIPPED_SECRET_KEYS:
        headers = {"Cookie": f"{cookie_name}={forged_cookie(key)}"}
        with app.test_request_context("/", headers=headers):
            session = interface.open_session(app, request)
            assert session is not None and dict(session) == {}
    # The same cookie signed with the app's real key would have been read: the check matters.
    real = forged_cookie(app.config["SECRET_KEY"])
    with app.test_request_context("/", headers={"Cookie": f"{cookie_name}={real}"}):
        session = interface.open_session(app, request)
        assert session is not None and session["who"] == {"kind": "token", "id": 1}
