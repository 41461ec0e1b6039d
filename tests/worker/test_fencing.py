"""Self-fencing: a worker cut off from the service (a real TCP proxy the test cuts) for longer
than its lease stops the run by itself; a result finished while cut off is delivered when the
line heals only if its lease is still current (the outbox keeps it, a 409 drops it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from registry.client import API, Client
from registry.db import make_session_factory, transaction
from registry.http.app import create_app
from registry.services.reaper import Reaper, reap_once
from registry.settings import Settings
from tests.support.builders import make_version
from tests.support.procs import free_port, serve_in_thread, wait_for
from tests.support.proxy import Proxy, proxy_to
from worker.daemon import Daemon, Options, StopSignal
from worker.execute import Result
from worker.heartbeat import Heartbeat
from worker.outbox import Outbox
from worker.training import Stopped

LEASE_S = 1


@pytest.fixture
def service(settings: Settings, engine: Engine) -> Iterator[str]:
    """The service with a 1 s lease (beats every 1/3 s) on a real port; no reaper of its own."""
    with transaction(make_session_factory(engine)) as s:
        make_version(s, "tiny", seed=7)
    with serve_in_thread(create_app(settings.with_(lease_seconds=LEASE_S), engine=engine)) as url:
        yield url


def api(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    answer = requests.request(
        method, f"{url}{API}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def daemon(url: str, token: str, execute: Callable[..., Result], state: Path) -> Daemon:
    options = Options(state_dir=state, once=True, poll_min=0.05, poll_max=0.2, name=state.name)
    clients = (Client(url, token, retries=0, timeout=2), Client(url, token, retries=0, timeout=2))
    return Daemon(*clients, execute, None, "cpu", options, StopSignal())


def in_thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def succeed(job: dict[str, Any], *_args: Any) -> Result:
    return Result("succeeded", {"train_loss": 1.25}, {}, f"mlf-{job['run']['attempt']}")


def test_heartbeat_fences_itself_after_a_lease_without_an_accepted_renewal() -> None:
    dead = Client(f"http://127.0.0.1:{free_port()}", "t", retries=0, timeout=1)
    beat = Heartbeat(lambda rid, body: dead.request("POST", f"/x/{rid}", json=body), 1, "l", 0.6)
    with beat:
        assert beat.check() is None
        wait_for(lambda: beat.check(), 3, "self-fencing")
    assert beat.lost == "unreachable"


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_a_cut_off_worker_stops_the_run_by_itself_and_another_finishes_it(
    service: str, engine: Engine, tokens: dict[str, str], tmp_path: Path, mode: str
) -> None:
    run = api(service, tokens["admin"], "POST", "/runs", {"config": "tiny"})
    started, stopped = threading.Event(), []

    def train(job: Any, tracker: Any, device: str, should_stop: Any, *rest: Any) -> Result:
        started.set()
        while not should_stop():
            time.sleep(0.02)
        stopped.append(time.monotonic())
        raise Stopped("stopped at a step")

    with proxy_to(service) as line, Reaper(make_session_factory(engine), 0.2):
        cut_off = daemon(line.url, tokens["worker"], train, tmp_path / "cut-off")
        worker = in_thread(cut_off.work)
        assert started.wait(10)
        line.cut(mode)
        cut_at = time.monotonic()
        worker.join(20)
        assert stopped and stopped[0] - cut_at < LEASE_S + 1.0  # the lease, then one step
        wait_for(lambda: _run(service, tokens, run["id"])["status"] == "queued", 10, "the reap")
        assert daemon(service, tokens["worker"], succeed, tmp_path / "other").work() == 0
        stop_s, done_s = stopped[0] - cut_at, time.monotonic() - cut_at
        print(f"{mode}: stopped {stop_s:.2f}s after the cut; another finished it at {done_s:.2f}s")
    done = _run(service, tokens, run["id"])
    assert (done["status"], done["attempt"], done["mlflow_run_id"]) == ("succeeded", 2, "mlf-2")


def _run(url: str, tokens: dict[str, str], run_id: int) -> Any:
    return api(url, tokens["viewer"], "GET", f"/runs/{run_id}")


def _finish_while_cut_off(line: Proxy, token: str, state: Path) -> threading.Thread:
    """A worker whose run finishes right after the line is cut; it then retries delivery."""

    def train(job: Any, *_args: Any) -> Result:
        line.cut()
        return succeed(job)

    return in_thread(daemon(line.url, token, train, state).work)


def test_a_result_finished_while_cut_off_is_delivered_while_its_lease_is_current(
    service: str, engine: Engine, tokens: dict[str, str], tmp_path: Path
) -> None:
    """Past its time but not reaped, the lease is current: the late result is kept."""
    run = api(service, tokens["admin"], "POST", "/runs", {"config": "tiny"})
    with proxy_to(service) as line:
        worker = _finish_while_cut_off(line, tokens["worker"], tmp_path / "w")
        outbox = Outbox(tmp_path / "w" / "outbox")
        wait_for(outbox.pending, 10, "the result in the outbox")
        time.sleep(LEASE_S + 0.5)  # the lease has run out; nobody reaps
        assert _run(service, tokens, run["id"])["status"] == "running"
        line.heal()
        worker.join(20)
    done = _run(service, tokens, run["id"])
    assert (done["status"], done["attempt"], done["mlflow_run_id"]) == ("succeeded", 1, "mlf-1")
    assert outbox.pending() == []


def test_a_result_whose_lease_was_reaped_meanwhile_is_dropped_on_409(
    service: str, engine: Engine, tokens: dict[str, str], tmp_path: Path
) -> None:
    run = api(service, tokens["admin"], "POST", "/runs", {"config": "tiny"})
    with proxy_to(service) as line:
        worker = _finish_while_cut_off(line, tokens["worker"], tmp_path / "w")
        outbox = Outbox(tmp_path / "w" / "outbox")
        wait_for(outbox.pending, 10, "the result in the outbox")
        time.sleep(LEASE_S + 0.2)
        assert reap_once(make_session_factory(engine)) == [run["id"]]
        again = api(service, tokens["worker"], "POST", "/workers/claim", {"worker": "other"})
        line.heal()
        worker.join(20)
        assert not worker.is_alive() and outbox.pending() == []  # 409: dropped, not retried
    now = _run(service, tokens, run["id"])
    assert (now["status"], now["attempt"], now["worker"], now["metrics"]) == (
        "running",
        2,
        "other",
        None,
    )
    body = {"lease": again["lease"], "status": "succeeded", "metrics": {"n": 1.0}}
    assert api(service, tokens["worker"], "POST", f"/runs/{run['id']}/complete", body)
    assert _run(service, tokens, run["id"])["metrics"] == {"n": 1.0}
