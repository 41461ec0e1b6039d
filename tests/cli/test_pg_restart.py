"""PostgreSQL restarted mid-run: a private server (``initdb``/``pg_ctl``, its own port and data
folder) under a real ``registry serve`` and a real ``registry-worker``. While it is down every API
call and page gets 503 with ``Retry-After`` (never a 500); once it is back the service answers
again by itself, and the run succeeds once, as attempt 1. Stopped twice: ``pg_ctl stop -m fast``
(sessions ended cleanly) and ``-m immediate`` (a crash: recovery from the WAL at the start)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.livestack import (
    assert_one_result,
    elapsed,
    failed_calls,
    make_database,
    make_tokens,
    queue_runs,
    queue_tiny_runs,
    reported,
    wait_started,
    wait_succeeded,
    worker,
)
from tests.support.pgserver import PgServer, private_postgres
from tests.support.procs import Proc, Server, start_server, wait_for
from tests.support.web import csrf_of

pytestmark = pytest.mark.slow

#: What the worker logs when a heartbeat or a report got the service's 503.
UNAVAILABLE = "The database is unavailable"

#: Beats every 6.7 s; PostgreSQL stays down DOWN_S and until a beat failed, then starts in well
#: under a second, so the next beat is accepted inside the lease.
LEASE_S = 20
DOWN_S = 3
STEPS = 40


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with private_postgres() as server:
        yield server


def _browser(server: Server, token: str) -> requests.Session:
    """A signed-in web session (its cookie names a session row the pages look up)."""
    browser = requests.Session()
    page = browser.get(f"{server.url}/login", timeout=10).text
    form = {"method": "token", "token": token, "csrf_token": csrf_of(page)}
    signed = browser.post(f"{server.url}/login", data=form, timeout=10, allow_redirects=False)
    assert signed.status_code == 303, signed.text
    return browser


def _answers_while_down(
    server: Server, token: str, browser: requests.Session, run_id: int, worker_log: Proc
) -> list[requests.Response]:
    """The run, the run list, a claim and the runs page, over and over, for DOWN_S seconds and
    until a call of the worker failed for it (at most one beat interval more)."""
    answers, failed = [], failed_calls([worker_log], UNAVAILABLE)
    started = time.monotonic()
    while time.monotonic() - started < DOWN_S or (
        failed_calls([worker_log], UNAVAILABLE) == failed
        and time.monotonic() - started < LEASE_S / 3 + 5
    ):
        answers.append(server.get(f"/runs/{run_id}", token))
        answers.append(server.get("/runs", token))
        answers.append(server.post("/workers/claim", token, {"worker": "probe"}))
        answers.append(browser.get(f"{server.url}/runs", timeout=10))
        time.sleep(0.2)
    return answers


def _unavailable(answer: requests.Response) -> bool:
    if answer.status_code != 503 or answer.headers.get("Retry-After") != "5":
        return False
    if answer.request.path_url.startswith("/api/"):
        return bool(answer.json()["code"] == "database_unavailable")
    return "text/html" in answer.headers["Content-Type"]


def test_postgres_restarted_mid_run_answers_503_then_recovers_and_loses_nothing(
    pg: PgServer, tmp_path: Path
) -> None:
    url = make_database(pg.url())
    tokens, tracking = make_tokens(url), f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        "DATABASE_URL": url,
        "REGISTRY_LEASE_SECONDS": str(LEASE_S),
        "REGISTRY_INSECURE_COOKIES": "1",  # the browser's cookie over plain HTTP on 127.0.0.1
    }
    server = start_server(env, tmp_path / "logs" / "server.log")
    admin = tokens["admin"]
    runs = queue_tiny_runs(server, admin, 1, num_training_steps=STEPS, eval_every_steps=20)
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking).search_experiments()  # the store's tables first
    proc = worker(server.url, tokens["worker"], tracking, tmp_path, "w1", "--max-runs", "2")
    browser, downs, recoveries = _browser(server, admin), [], []
    for mode in ("fast", "immediate"):  # one run each, stopped while it trains
        wait_started(server, admin, runs[-1:])
        pg.stop(mode)
        stopped = time.monotonic()
        answers = _answers_while_down(server, admin, browser, runs[-1], proc)
        bad = [(a.request.method, a.url, a.status_code, a.text[:200]) for a in answers]
        assert answers and not [b for b, a in zip(bad, answers, strict=True) if not _unavailable(a)]
        downs.append(elapsed(stopped))
        started = time.monotonic()
        pg.start()
        wait_for(lambda: server.get("/runs", admin).status_code == 200, 30, "recovery")
        recoveries.append(elapsed(started))
        assert browser.get(f"{server.url}/runs", timeout=10).status_code == 200
        if mode == "fast":
            runs += queue_runs(server, admin, 1)

    for run_id in runs:
        run = wait_succeeded(server, admin, run_id, proc)
        assert_one_result(run, tracking)
        assert reported(proc, run_id) == 1
    assert proc.wait(60) == 0, proc.output()
    assert "self-fencing" not in proc.output()
    assert "unhandled error" not in server.proc.output()
    print(f"PostgreSQL down {downs} s (fast, immediate); answering after {recoveries} s")
