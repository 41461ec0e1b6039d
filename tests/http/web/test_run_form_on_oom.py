"""The web form's "On out of memory" choice: the API's ``on_oom`` (CONTRACT 5.3), shown on the
run's page; another value is 400 naming the field, and nothing is queued (both databases)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.models import Run
from registry.services import queue
from tests.support.web import csrf_of


def test_the_form_queues_a_run_that_remedies_and_its_page_says_so(
    web: FlaskClient, engine: Engine, stored: Any
) -> None:
    stored("tiny")
    page = web.get("/configs/tiny").get_data(as_text=True)
    assert 'name="on_oom"' in page and "the guide's next remedy" in page
    fields = {"version": "1", "kind": "train", "queue": "default", "priority": "0"}
    fields["csrf_token"] = csrf_of(page)

    made = web.post("/configs/tiny/runs", data={**fields, "on_oom": "remedy"})
    assert made.status_code == 303
    run_id = int(made.headers["Location"].rsplit("/", 1)[-1])
    with transaction(make_session_factory(engine)) as s:
        assert queue.get_run(s, run_id).on_oom == "remedy"
        count = s.query(Run).count()
    shown = web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "On out of memory" in shown and "remedy" in shown

    refused = web.post("/configs/tiny/runs", data={**fields, "on_oom": "retry", "force": "1"})
    assert refused.status_code == 400 and "on_oom must be fail or remedy" in refused.get_data(
        as_text=True
    )
    with transaction(make_session_factory(engine)) as s:
        assert s.query(Run).count() == count
