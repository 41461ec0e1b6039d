"""Drain (contract 5.1): ``registry-worker --drain`` or SIGUSR1 to a running daemon claims
nothing new, finishes its run and exits 0. Real ``registry serve``, real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from registry.settings import Settings
from tests.support.procs import BIN, Proc, Server, start_server, start_worker, wait_for
from worker.signals import PidFile

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 600  # one tiny training on a loaded 2-core machine (other suites share it)


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Server:
    return start_server({"DATABASE_URL": settings.database_url}, tmp_path / "server.log")


def worker(server: Server, settings: Settings, token: str, tmp_path: Path, *args: str) -> Proc:
    """A daemon reading its token from a 0600 file (REGISTRY_TOKEN_FILE), as its unit does."""
    token_file = tmp_path / "worker.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    env = {
        "REGISTRY_URL": server.url,
        "REGISTRY_TOKEN": "",
        "REGISTRY_TOKEN_FILE": str(token_file),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
    }
    return start_worker(
        env,
        tmp_path / "worker.log",
        "--name",
        "w1",
        "--poll-max",
        "1",
        "--pid-file",
        str(tmp_path / "run" / "worker.pid"),
        *args,
        state_dir=tmp_path / "state",
    )


def queue_tiny(server: Server, token: str, runs: int, steps: int) -> list[int]:
    doc = server.get("/presets/tiny-cpu", token).json()
    doc["training"].update(num_training_steps=steps, eval_every_steps=steps)
    answer = server.post("/configs", token, {"name": "tiny", "config": doc})
    assert answer.status_code == 201, answer.text
    ids = []
    for _ in range(runs):
        queued = server.post("/runs", token, {"config": "tiny", "force": True})
        assert queued.status_code == 201, queued.text
        ids.append(int(queued.json()["id"]))
    return ids


def get_run(server: Server, token: str, run_id: int) -> dict[str, Any]:
    return server.get(f"/runs/{run_id}", token).json()  # type: ignore[no-any-return]


def drain_command(pid_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "registry-worker"), "--drain", "--pid-file", str(pid_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )


STEPS = 300


def test_drain_while_training_finishes_the_run_claims_nothing_and_exits_0(
    server: Server, settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    admin = tokens["admin"]
    first, second = queue_tiny(server, admin, runs=2, steps=STEPS)
    proc = worker(server, settings, tokens["worker"], tmp_path)
    pid_file = tmp_path / "run" / "worker.pid"

    def claimed() -> bool:
        # Drain as soon as the run is claimed: on a quiet machine the whole run can end
        # before its first progress report (a third of the lease) says it is training.
        run = get_run(server, admin, first)
        assert run["status"] in ("queued", "running"), (run, proc.output())
        return bool(run["status"] == "running")

    wait_for(claimed, RUN_TIMEOUT, "the first run to be claimed", poll=0.05)
    assert pid_file.read_text().strip() == str(proc.pid)
    sent = drain_command(pid_file)
    assert sent.returncode == 0, sent.stderr
    at_drain = get_run(server, admin, first)  # the drain came mid-run, not after it
    assert at_drain["status"] == "running", at_drain
    assert ((at_drain["progress"] or {}).get("step") or 0) < STEPS, at_drain
    assert f"pid {proc.pid}" in sent.stderr

    assert proc.wait(RUN_TIMEOUT) == 0, proc.output()
    done = get_run(server, admin, first)
    assert (done["status"], done["attempt"], done["worker"]) == ("succeeded", 1, "w1")
    assert done["metrics"]["train_loss"] > 0
    left = get_run(server, admin, second)
    assert (left["status"], left["worker"]) == ("queued", None), left
    assert "draining" in proc.output()
    assert not pid_file.exists()
    again = drain_command(pid_file)  # nobody left to drain
    assert again.returncode == 2 and "does not exist" in again.stderr


def test_sigusr1_to_an_idle_daemon_exits_0_at_once(
    server: Server, settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    proc = worker(server, settings, tokens["worker"], tmp_path, "--poll-max", "30")
    wait_for(lambda: "serving" in proc.output(), RUN_TIMEOUT, "the worker to start")
    time.sleep(1.0)  # in its idle wait now (the queue is empty)
    started = time.monotonic()
    proc.signal(signal.SIGUSR1)
    assert proc.wait(20) == 0, proc.output()
    assert time.monotonic() - started < 10
    assert "stopping after 0 run(s)" in proc.output()


def test_a_second_daemon_on_the_same_pid_file_is_refused_and_a_stale_file_is_not_signalled(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "worker.pid"
    pid_file.write_text("1\n")  # a stale file naming a live process that is no worker
    stale = drain_command(pid_file)
    assert stale.returncode == 2 and "is stale" in stale.stderr
    assert drain_command(tmp_path / "none.pid").returncode == 2
    missing = subprocess.run(
        [str(BIN / "registry-worker"), "--drain"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "--drain needs --pid-file" in missing.stderr
    with PidFile(pid_file):  # this process holds it, as a running daemon would
        assert pid_file.read_text().strip() == str(os.getpid())
        second = subprocess.run(
            [str(BIN / "registry-worker"), "--once", "--pid-file", str(pid_file)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 2 and "held by a running registry-worker" in second.stderr
    assert not pid_file.exists()
