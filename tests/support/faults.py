"""Fault tests with real processes: a ``registry serve`` with a short lease and a fast reaper,
``registry-worker``s the test stops, kills and restarts (as systemd would: same name, same
state folder), and what the real MLflow store says about every attempt of a run.

"Nothing lost, nothing doubled" is :meth:`Stack.assert_one_result`: the run succeeded once,
exactly one MLflow run of it is FINISHED (the one the registry recorded), and the MLflow run of
every other attempt is KILLED or FAILED, never left RUNNING.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.settings import Settings
from tests.support.procs import Proc, Server, start_server, start_worker, wait_for

LEASE_S = 3  #: the service's lease; heartbeats every second
REAP_S = 1  #: REGISTRY_REAP_INTERVAL
RUN_TIMEOUT = 300  #: one tiny training on a loaded 2-core machine
DEAD = ("KILLED", "FAILED")


@dataclass
class Stack:
    """One service and the workers a test started on it, by name."""

    server: Server
    settings: Settings
    tokens: dict[str, str]
    tmp: Path
    workers: dict[str, Proc] = field(default_factory=dict)

    # -- the service -------------------------------------------------------------------

    def register(self, name: str, **training: Any) -> None:
        """The tiny-cpu preset, with ``training`` changes, as config ``name``."""
        admin = self.tokens["admin"]
        doc = self.server.get("/presets/tiny-cpu", admin).json()
        doc["training"].update(training)
        answer = self.server.post("/configs", admin, {"name": name, "config": doc})
        assert answer.status_code == 201, answer.text

    def queue(self, config: str, **body: Any) -> int:
        answer = self.server.post("/runs", self.tokens["admin"], {"config": config, **body})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    def run(self, run_id: int) -> dict[str, Any]:
        answer = self.server.get(f"/runs/{run_id}", self.tokens["viewer"])
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def wait_run(self, run_id: int, what: str, ok: Any, timeout: float = RUN_TIMEOUT) -> Any:
        """Poll the run until ``ok(run)`` is true; the run then. Worker logs on a timeout."""

        def reached() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if ok(run) else None

        try:
            return wait_for(reached, timeout, f"run {run_id}: {what}", poll=0.2)
        except AssertionError:
            print(self.logs())
            raise

    # -- the workers -------------------------------------------------------------------

    def worker(self, name: str, *args: str) -> Proc:
        """Start (or restart) worker ``name``: its own log and state folder, kept across starts."""
        env = {
            "REGISTRY_URL": self.server.url,
            "REGISTRY_TOKEN": self.tokens["worker"],
            "MLFLOW_TRACKING_URI": self.settings.mlflow_tracking_uri,
            "MLFLOW_ARTIFACT_ROOT": self.settings.mlflow_artifact_root,
            "HF_HUB_OFFLINE": "1",
        }
        log = self.tmp / "logs" / f"{name}.log"
        argv = ("--name", name, "--poll-max", "1", *args)
        proc = start_worker(env, log, *argv, state_dir=self.tmp / f"state-{name}")
        self.workers[name] = proc
        return proc

    def stop(self) -> None:
        """The workers first (a worker without its service backs off before it stops)."""
        for proc in self.workers.values():
            proc.stop()
        self.server.proc.stop()

    def logs(self) -> str:
        parts = [f"--- {n}\n{p.output()[-6000:]}" for n, p in self.workers.items()]
        return "\n".join([*parts, f"--- server\n{self.server.proc.output()[-4000:]}"])

    # -- MLflow ------------------------------------------------------------------------

    def mlflow(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.settings.mlflow_tracking_uri)

    def attempts(self, config: str, run_id: int) -> list[tuple[int, str, str]]:
        """(attempt, status, MLflow run id) of every MLflow run of the registry run ``run_id``."""
        client = self.mlflow()
        experiment = client.get_experiment_by_name(config)
        if experiment is None:
            return []
        found = client.search_runs(
            [experiment.experiment_id], f"tags.`registry.run_id` = '{run_id}'"
        )
        rows = [(int(r.data.tags["registry.attempt"]), r.info.status, r.info.run_id) for r in found]
        return sorted(rows)

    def checkpointed(self, config: str, run_id: int) -> int | None:
        """The latest step any attempt of the run checkpointed, or None."""
        from worker.tracking import CHECKPOINT_STEP_TAG

        client, steps = self.mlflow(), []
        for _attempt, _status, mlflow_id in self.attempts(config, run_id):
            tags = client.get_run(mlflow_id).data.tags
            if CHECKPOINT_STEP_TAG in tags:
                steps.append(int(tags[CHECKPOINT_STEP_TAG]))
        return max(steps, default=None)

    def assert_one_result(self, config: str, run_id: int, attempt: int) -> dict[str, Any]:
        """The run succeeded once, as ``attempt``; every other MLflow run of it is dead."""
        run = self.run(run_id)
        assert (run["status"], run["attempt"]) == ("succeeded", attempt), run
        rows = self.attempts(config, run_id)
        finished = [r for r in rows if r[1] == "FINISHED"]
        assert finished == [(attempt, "FINISHED", run["mlflow_run_id"])], rows
        assert all(status in DEAD for _a, status, _id in rows if _id != run["mlflow_run_id"]), rows
        assert len({a for a, _s, _id in rows}) == len(rows), rows  # one MLflow run per attempt
        return run


def start_stack(settings: Settings, tokens: dict[str, str], tmp: Path) -> Stack:
    """``registry serve`` on the test database with LEASE_S and REAP_S."""
    env = {
        "DATABASE_URL": settings.database_url,
        "REGISTRY_LEASE_SECONDS": str(LEASE_S),
        "REGISTRY_REAP_INTERVAL": str(REAP_S),
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
    }
    stack = Stack(start_server(env, tmp / "logs" / "server.log"), settings, tokens, tmp)
    stack.mlflow().search_experiments()  # the store's tables, made before any worker races
    return stack


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def logged_at(proc: Proc, needle: str, timeout: float = 30.0) -> float:
    """The wall-clock time (``time.time()``) of the first log line of ``proc`` holding
    ``needle``, waiting for it up to ``timeout`` s (the worker logs local time in ms)."""

    def find() -> float | None:
        for line in proc.output().splitlines():
            stamp = LOG_TIME.match(line)
            if needle in line and stamp:
                return dt.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return None

    try:
        return float(wait_for(find, timeout, f"{needle!r} in the log of pid {proc.pid}"))
    except AssertionError:
        print(proc.output())
        raise


def since(start: float) -> float:
    return time.monotonic() - start


@dataclass(frozen=True)
class Kill:
    """One worker killed by :func:`kill_whoever_trains`."""

    attempt: int
    worker: str
    at: float  #: time.monotonic()


def kill_whoever_trains(stack: Stack, run_id: int, timeout: float = RUN_TIMEOUT) -> list[Kill]:
    """Until run ``run_id`` is finished: kill -9 every worker that trains it (once its MLflow
    run exists, so each attempt has one) and restart that worker, as systemd's ``Restart=``
    would (same name, same state folder). The kills, in order."""
    kills: list[Kill] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = stack.run(run_id)
        if run["status"] not in ("queued", "running"):
            return kills
        progress = run.get("progress") or {}
        attempt = int(run["attempt"])
        if progress.get("mlflow_run_id") and attempt not in [k.attempt for k in kills]:
            victim = stack.workers[run["worker"]]
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(30)
            kills.append(Kill(attempt, run["worker"], time.monotonic()))
            stack.worker(run["worker"])
        time.sleep(0.2)
    print(stack.logs())
    raise AssertionError(f"run {run_id} still unfinished after {timeout}s; kills: {kills}")
