"""Issue 9, items 9 and 12: the web form's "queue a run" follows the API's rules (both DBs).

The duplicate-run check (with a ``force`` box like the API's ``"force": true``), the quotas
and the priority cap apply to the form and to the Reproduce button as they do to the API.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.services import configs, duplicates, queue
from registry.settings import Settings
from tests.support.web import csrf_of, sign_in

CODE = "1.0+gabc123"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(runs_per_minute=3, max_queued_runs=100, max_priority_submitter=10)


@pytest.fixture
def submitter(app: Flask, tokens: dict[str, str]) -> FlaskClient:
    """A client signed in with the submitter token."""
    client = app.test_client()
    sign_in(client, tokens["submitter"])
    return client


Post = Callable[..., Any]


def poster(client: FlaskClient) -> Post:
    """``post(url, data)``: the queue form of config ``tiny`` (with its CSRF token) posted."""

    def post(url: str = "/configs/tiny/runs", **data: str) -> Any:
        token = csrf_of(client.get("/configs/tiny").get_data(as_text=True))
        fields = {"version": "1", "kind": "train", "queue": "default", "priority": "0"}
        return client.post(url, data={**fields, **data, "csrf_token": token})

    return post


def _text(answer: Any) -> str:
    return str(answer.get_data(as_text=True))


def _trained(engine: Engine, stored: Any) -> int:
    """Config ``tiny`` with a succeeded train run made by code CODE; its id."""
    stored("tiny")
    with transaction(make_session_factory(engine)) as s:
        version = configs.resolve_version(s, "tiny", 1)
        run = queue.enqueue(s, version, "train", created_by="earlier")
        now = queue.db_now(s)
        claimed = queue.claim(s, "w", ["default"], now, 60)
        assert claimed is not None and claimed.run.id == run.id
        provenance = {"code_version": CODE, "seed": run.seed}
        metrics = {"val_loss": 2.0}
        queue.complete(s, run.id, claimed.lease, "succeeded", metrics, "m", provenance, None, now)
        return run.id


def test_the_form_refuses_a_run_that_already_succeeded_unless_forced(
    web: FlaskClient, engine: Engine, stored: Any, auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicates, "pinned_code_version", lambda: CODE)  # a clean checkout
    done = _trained(engine, stored)
    post = poster(web)
    refused = post(queue="mine", priority="7")
    html = _text(refused)
    assert refused.status_code == 409 and 'id="run-error"' in html
    assert f'href="/runs/{done}"' in html and "Train again" in html
    assert 'value="mine"' in html and 'value="7"' in html  # the form keeps what was typed
    api = web.post("/api/v1/runs", json={"config": "tiny"}, headers=auth("admin"))
    assert api.status_code == 409 and api.get_json()["code"] == "duplicate_run"
    forced = post(force="1")
    assert forced.status_code == 303
    assert forced.headers["Location"] != f"/runs/{done}"
    evaluate = post(kind="evaluate", from_run=str(done))  # other work: not a duplicate
    assert evaluate.status_code == 303


def test_the_form_and_reproduce_keep_to_the_submitters_quota(
    submitter: FlaskClient, stored: Any
) -> None:
    stored("tiny")
    post = poster(submitter)
    made = [post() for _ in range(3)]
    assert [m.status_code for m in made] == [303] * 3
    over = post()
    assert over.status_code == 429 and 1 <= int(over.headers["Retry-After"]) <= 60
    assert "runs_per_minute" in _text(over) and 'id="queue-form"' in _text(over)
    run_url = made[0].headers["Location"]
    token = csrf_of(submitter.get(run_url).get_data(as_text=True))
    again = submitter.post(run_url + "/reproduce", data={"csrf_token": token})
    assert again.status_code == 429 and "Retry-After" in again.headers
    assert "runs_per_minute" in _text(again)


def test_the_form_caps_the_submitters_priority(submitter: FlaskClient, stored: Any) -> None:
    stored("tiny")
    page = _text(submitter.get("/configs/tiny"))
    assert re.search(r'id="q-priority"[^>]*max="10"', page)
    post = poster(submitter)
    refused = post(priority="11")
    assert refused.status_code == 403 and "priority 11 is above 10" in _text(refused)
    assert 'aria-invalid="true"' in _text(refused)
    assert post(priority="10").status_code == 303


def test_admins_may_give_any_priority_on_the_form(web: FlaskClient, stored: Any) -> None:
    stored("tiny")
    assert re.search(r'id="q-priority"[^>]*max="1000"', _text(web.get("/configs/tiny")))
    assert poster(web)(priority="1000").status_code == 303
