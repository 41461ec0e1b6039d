"""The web form's "queue a run" with a trained run chosen and kind train: a fine-tune, by the
API's rules (issue 13 item 5; both databases)."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine

from registry.db import make_session_factory, transaction
from registry.services import configs, queue
from tests.support.web import csrf_of


def test_the_form_queues_a_fine_tune_of_a_chosen_trained_run(
    web: FlaskClient, engine: Engine, stored: Any
) -> None:
    stored("tiny")
    with transaction(make_session_factory(engine)) as s:
        version = configs.resolve_version(s, "tiny", 1)
        waiting = queue.enqueue(s, version, "train").id
        claimed = queue.claim(s, "w", ["default"], queue.db_now(s), 60)
        assert claimed is not None
        now = queue.db_now(s)
        queue.complete(s, waiting, claimed.lease, "succeeded", {}, "m", {}, None, now)
        unfinished = queue.enqueue(s, version, "train").id
    page = web.get("/configs/tiny").get_data(as_text=True)
    assert "fine-tunes it" in page
    fields = {"version": "1", "kind": "train", "queue": "default", "priority": "0"}

    def post(from_run: int) -> Any:
        data = {**fields, "from_run": str(from_run), "csrf_token": csrf_of(page)}
        return web.post("/configs/tiny/runs", data=data)

    made = post(waiting)
    assert made.status_code == 303
    run_id = int(made.headers["Location"].rsplit("/", 1)[-1])
    with transaction(make_session_factory(engine)) as s:
        run = queue.get_run(s, run_id)
        assert (run.kind, run.from_run) == ("train", waiting)
    refused = post(unfinished)
    assert refused.status_code == 400 and "fine-tuning needs a succeeded train run" in (
        refused.get_data(as_text=True)
    )
