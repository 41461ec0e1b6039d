"""Web fixtures: plain-HTTP cookies, a signed-in test client, and form helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.document import presets
from registry.services import configs, queue
from registry.settings import Settings
from tests.support.web import csrf_of, sign_in


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings with cookies allowed over the test client's plain HTTP."""
    return settings.with_(secure_cookies=False)


@pytest.fixture
def web(client: FlaskClient, tokens: dict[str, str]) -> FlaskClient:
    """A test client signed in as an admin."""
    sign_in(client, tokens["admin"])
    return client


@pytest.fixture
def post_form(web: FlaskClient) -> Callable[..., Any]:
    """``post_form(page_url, post_url, data)``: fetch the page for its CSRF token, then post."""

    def post(page: str, url: str, data: dict[str, Any], **kwargs: Any) -> Any:
        token = csrf_of(web.get(page).get_data(as_text=True))
        return web.post(url, data={**data, "csrf_token": token}, **kwargs)

    return post


@pytest.fixture
def stored(engine: Engine) -> Callable[..., Any]:
    """``stored(name, **training)``: the tiny-cpu preset saved as ``name``; returns versions."""

    def make(name: str = "tiny", runs: int = 0, **training: Any) -> list[int]:
        with transaction(make_session_factory(engine)) as s:
            doc = dict(presets.get_preset("tiny-cpu").document)
            doc = {**doc, "training": {**doc["training"], **training}}
            added = configs.create_config(s, name, doc, message="first", created_by="t")
            for _ in range(runs):
                queue.enqueue(s, added.version, "train")
            return [added.version.version]

    return make
