"""The daemon's loop against the real service over HTTP (werkzeug in a thread, both backends).

``execute`` is replaced by small stand-ins here, so that stopping, failing and reporting can
be driven step by step; the real training runs in tests/test_end_to_end.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine

from registry import errors
from registry.client import Client
from registry.db import make_session_factory, transaction
from registry.http.app import create_app
from registry.settings import Settings
from tests.support.builders import make_version
from tests.support.procs import free_port, serve_in_thread
from worker.daemon import Daemon, Options, StopSignal
from worker.execute import Result
from worker.outbox import Outbox
from worker.training import Stopped

Execute = Callable[..., Result]


@pytest.fixture
def url(app: Flask, engine: Engine) -> Iterator[str]:
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny", seed=7)
    with serve_in_thread(app) as base:
        yield base


def api(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(
        method,
        f"{url}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def make_daemon(url: str, token: str, execute: Execute, tmp_path: Path, **options: Any) -> Daemon:
    opts = Options(
        state_dir=tmp_path / "state",
        once=True,
        poll_min=0.05,
        poll_max=0.2,
        name="w-test",
        **options,
    )
    return Daemon(
        Client(url, token, retries=0),
        Client(url, token, retries=0),
        execute,
        None,
        "cpu",
        opts,
        StopSignal(),
    )


def succeed(job: dict[str, Any], *_args: Any) -> Result:
    return Result("succeeded", {"train_loss": 1.25}, {"seed": job["run"]["seed"]}, "mlf-1")


def until_stopped(should_stop: Callable[[], bool], timeout: float = 15.0) -> None:
    """What training does: step until asked to stop, then raise Stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if should_stop():
            raise Stopped("stopped at a step")
        time.sleep(0.02)
    raise AssertionError("never asked to stop")


def test_once_on_an_empty_queue_registers_and_exits(
    url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    calls: list[Any] = []
    daemon = make_daemon(url, tokens["worker"], lambda *a: calls.append(a), tmp_path)
    assert daemon.work() == 0 and calls == []
    workers = api(url, tokens["viewer"], "GET", "/workers")["workers"]
    assert [(w["id"], w["devices"]["kind"]) for w in workers] == [("w-test", "cpu")]


def test_a_claimed_run_is_executed_and_reported(
    url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    run = api(url, tokens["admin"], "POST", "/runs", {"config": "tiny"})
    seen: list[dict[str, Any]] = []

    def execute(job: dict[str, Any], tracker: Any, device: str, *rest: Any) -> Result:
        seen.append(job)
        return succeed(job)

    assert make_daemon(url, tokens["worker"], execute, tmp_path).work() == 0
    assert seen[0]["run"]["id"] == run["id"] and seen[0]["run"]["attempt"] == 1
    assert isinstance(seen[0]["lease"], str) and len(seen[0]["lease"]) >= 43
    assert seen[0]["config"] == {"training": {"seed": 7}}
    done = api(url, tokens["viewer"], "GET", f"/runs/{run['id']}")
    assert (done["status"], done["metrics"], done["mlflow_run_id"], done["provenance"]) == (
        "succeeded",
        {"train_loss": 1.25},
        "mlf-1",
        {"seed": 7},
    )
    assert list((tmp_path / "state" / "outbox").iterdir()) == []


def test_max_runs_takes_that_many(url: str, tokens: dict[str, str], tmp_path: Path) -> None:
    ids = [api(url, tokens["admin"], "POST", "/runs", {"config": "tiny"})["id"] for _ in range(3)]
    daemon = make_daemon(url, tokens["worker"], succeed, tmp_path)
    daemon.options.once, daemon.options.max_runs = False, 2
    assert daemon.work() == 0
    statuses = [api(url, tokens["viewer"], "GET", f"/runs/{i}")["status"] for i in ids]
    assert statuses == ["succeeded", "succeeded", "queued"]


def test_a_failing_run_is_recorded_as_failed(
    url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    run = api(url, tokens["admin"], "POST", "/runs", {"config": "tiny"})

    def explode(*_args: Any) -> Result:
        exc = ValueError("the corpus is too short")
        exc.mlflow_run_id = "mlf-failed"  # type: ignore[attr-defined]
        raise exc

    make_daemon(url, tokens["worker"], explode, tmp_path).work()
    done = api(url, tokens["viewer"], "GET", f"/runs/{run['id']}")
    assert done["status"] == "failed" and done["mlflow_run_id"] == "mlf-failed"
    assert done["error"]["kind"] == "exception"
    assert done["error"]["type"] == "builtins.ValueError"
    assert "the corpus is too short" in done["error"]["traceback"]


def test_warm_stop_hands_the_run_back_to_the_queue(
    url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    run = api(url, tokens["admin"], "POST", "/runs", {"config": "tiny"})
    daemon = make_daemon(url, tokens["worker"], succeed, tmp_path)

    def interrupted(job: Any, tracker: Any, device: str, should_stop: Any, *rest: Any) -> Result:
        daemon.stop.event.set()  # what the first SIGTERM does
        until_stopped(should_stop)
        raise AssertionError("unreachable")

    daemon.execute = interrupted
    daemon.options.once = False
    assert daemon.work() == 0
    back = api(url, tokens["viewer"], "GET", f"/runs/{run['id']}")
    assert (back["status"], back["attempt"], back["worker"]) == ("queued", 2, None)


def test_cancel_reaches_the_run_through_its_heartbeat(
    settings: Settings, engine: Engine, tokens: dict[str, str], tmp_path: Path
) -> None:
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny", seed=7)
    app = create_app(settings.with_(lease_seconds=1), engine=engine)  # beats every 1/3 s
    with serve_in_thread(app) as url:
        run = api(url, tokens["admin"], "POST", "/runs", {"config": "tiny"})

        def cancelled_midway(
            job: Any, tracker: Any, device: str, should_stop: Any, *rest: Any
        ) -> Result:
            api(url, tokens["submitter"], "POST", f"/runs/{run['id']}/cancel")
            try:
                until_stopped(should_stop)
            except Stopped as exc:
                exc.mlflow_run_id = "mlf-killed"  # type: ignore[attr-defined]
                raise
            raise AssertionError("unreachable")

        make_daemon(url, tokens["worker"], cancelled_midway, tmp_path).work()
        done = api(url, tokens["viewer"], "GET", f"/runs/{run['id']}")
    assert (done["status"], done["mlflow_run_id"]) == ("cancelled", "mlf-killed")


def test_start_delivers_the_outbox_first(url: str, tokens: dict[str, str], tmp_path: Path) -> None:
    run = api(url, tokens["admin"], "POST", "/runs", {"config": "tiny"})
    claim = api(url, tokens["worker"], "POST", "/workers/claim", {"worker": "w-before"})
    outbox = Outbox(tmp_path / "state" / "outbox")
    report = {
        "lease": claim["lease"],
        "status": "succeeded",
        "metrics": {"train_loss": 2.0},
        "mlflow_run_id": "kept",
    }
    outbox.put(run["id"], report)
    outbox.put(run["id"], {**report, "lease": 1})  # an attempt number, not a lease: 409, dropped
    make_daemon(url, tokens["worker"], succeed, tmp_path).work()
    done = api(url, tokens["viewer"], "GET", f"/runs/{run['id']}")
    assert (done["status"], done["mlflow_run_id"]) == ("succeeded", "kept")
    assert outbox.pending() == []


def test_a_result_the_service_cannot_take_stays_on_disk(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    daemon = make_daemon(dead, "t", succeed, tmp_path)
    daemon.stop.event.set()  # give up after the first failed attempt
    daemon.report(5, {"lease": 1, "status": "succeeded", "metrics": {}})
    [kept] = Outbox(tmp_path / "state" / "outbox").pending()
    assert (kept.run_id, kept.body["status"]) == (5, "succeeded")


def test_outbox_keeps_until_a_final_answer(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    entry = outbox.put(3, {"lease": 2, "status": "failed"})
    outcomes: list[Exception | None] = [errors.Unavailable("down"), errors.Unauthorized(), None]

    def send(run_id: int, body: dict[str, Any]) -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    assert outbox.deliver(entry, send) is False
    assert outbox.deliver(entry, send) is False
    assert outbox.deliver(entry, send) is True and outbox.pending() == []
    stale = outbox.put(4, {"lease": 1, "status": "succeeded"})

    def conflict(run_id: int, body: dict[str, Any]) -> None:
        raise errors.StaleLease("old lease")

    assert outbox.deliver(stale, conflict) is True and not stale.path.exists()
    (tmp_path / "run-9-lease-1.json").write_text("{not json")
    assert outbox.pending() == [] and (tmp_path / "run-9-lease-1.bad").exists()


def test_outbox_files_are_the_owners_and_never_name_the_lease(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    lease = "a-lease-that-reports-run-3"
    entry = outbox.put(3, {"lease": lease, "status": "failed"})
    assert lease not in entry.path.name and entry.path.name.startswith("run-3-lease-")
    assert entry.path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "outbox").stat().st_mode & 0o077 == 0
    [kept] = outbox.pending()
    assert kept.body["lease"] == lease  # sent back exactly as the claim answered it
