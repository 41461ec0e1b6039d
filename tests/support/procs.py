"""Real processes for tests: the service (``registry serve``) and ``registry-worker``s.

Every process is started in its own session and stopped by its PID (its process group), never
by name. Output goes to a log file under the test's tmp_path, printed when a wait fails.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from werkzeug.serving import make_server

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
#: The session key of every ``registry serve`` these helpers start (serve refuses to run without
#: a strong one); random per test session, so it is never a value anyone could know.
SECRET_KEY = secrets.token_urlsafe(48)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Proc:
    """A started process and its log file."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this process alone."""
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pid {self.pid} still running; log:\n{self.output()}") from None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM its process group, then SIGKILL if it lingers."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout)
        except ProcessLookupError:
            pass

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-20000:] if self.log.exists() else ""


#: Every process started and not yet stopped; ``stop_started`` (an autouse fixture in
#: tests/conftest.py) stops what a test left running, also when the test failed midway.
STARTED: list[Proc] = []


def stop_started() -> None:
    """Stop, by PID, every process these helpers started that is still running."""
    while STARTED:
        STARTED.pop().stop()


def start(args: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None) -> Proc:
    """Start ``args`` in a new session with ``env`` added to this environment."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            args,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd or ROOT,
            start_new_session=True,
        )
    proc = Proc(popen, log)
    STARTED.append(proc)
    return proc


@dataclass
class Server:
    """A running ``registry serve``."""

    proc: Proc
    url: str

    def get(self, path: str, token: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}/api/v1{path}", headers=_auth(token), timeout=10, **kwargs)

    def post(self, path: str, token: str, body: Any = None) -> requests.Response:
        return requests.post(
            f"{self.url}/api/v1{path}", json=body, headers=_auth(token), timeout=30
        )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start_server(
    env: Mapping[str, str], log: Path, workers: int = 2, port: int | None = None
) -> Server:
    """``registry serve`` on ``port`` (default: a free one; with SECRET_KEY unless ``env`` names
    a key); returns once /health answers."""
    port = port or free_port()
    args = [str(BIN / "registry"), "serve", "--port", str(port), "--workers", str(workers)]
    proc = start(args, {"REGISTRY_SECRET_KEY": SECRET_KEY, **env}, log)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"registry serve exited; log:\n{proc.output()}")
        try:
            return requests.get(f"{url}/api/v1/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_for(healthy, 60, "registry serve to answer /health")
    return Server(proc, url)


def start_worker(
    env: Mapping[str, str], log: Path, *args: str, state_dir: Path | None = None
) -> Proc:
    """``registry-worker`` with ``args`` (server and token come from ``env``)."""
    argv = [str(BIN / "registry-worker"), *args]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    return start(argv, env, log)


@contextmanager
def serve_in_thread(app: Flask) -> Iterator[str]:
    """The app on a real HTTP port served by werkzeug in a thread; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def claim_loop(url: str, token: str, name: str, out: str, idle_limit: int = 3) -> None:
    """Claim and complete runs over HTTP as the daemon does, until the queue stays empty;
    writes ``name run_id`` per claim to ``out`` (run as ``python -m tests.support.procs``)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    api = f"{url}/api/v1"
    idle = 0
    with open(out, "w", encoding="utf-8") as fh:
        while idle < idle_limit:
            answer = session.post(f"{api}/workers/claim", json={"worker": name}, timeout=30)
            answer.raise_for_status()
            if answer.status_code == 204:
                idle += 1
                time.sleep(0.2)
                continue
            idle = 0
            job = answer.json()
            run_id = job["run"]["id"]
            fh.write(f"{name} {run_id}\n")
            body = {
                "lease": job["lease"],
                "status": "succeeded",
                "metrics": {"n": 1.0},
                "mlflow_run_id": name,
            }
            done = session.post(f"{api}/runs/{run_id}/complete", json=body, timeout=30)
            done.raise_for_status()


if __name__ == "__main__":
    claim_loop(*sys.argv[1:5])
