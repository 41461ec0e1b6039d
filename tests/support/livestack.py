"""A live stack for fault tests: a real ``registry serve``, real ``registry-worker``s training
tiny-cpu runs, a real MLflow store, and the checks that nothing was lost or doubled."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from registry.db import make_session_factory, transaction
from registry.services.auth import create_token
from tests.support.dbs import migrate
from tests.support.procs import Proc, Server, start_worker, wait_for

RUN_TIMEOUT = 600
#: What ``wait_progress`` reports for a run that already succeeded.
STEPS_DONE = 10**9
#: The run states a fault test accepts on its way to ``succeeded``: never ``failed``.
ON_THE_WAY = ("queued", "running", "succeeded")


def make_database(admin_url: str, name: str = "registry") -> str:
    """An empty, migrated database ``name`` on the server of ``admin_url``; returns its URL."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    migrate(url)
    return url


def make_tokens(url: str) -> dict[str, str]:
    """An admin and a worker token in the database at ``url``."""
    engine = create_engine(url)
    try:
        with transaction(make_session_factory(engine)) as s:
            return {role: create_token(s, f"fault-{role}", role) for role in ("admin", "worker")}
    finally:
        engine.dispose()


#: Smaller steps than the preset's, so that a loaded 2-core machine still trains a few a second.
LEAN = {"per_device_train_batch_size": 2}


def queue_tiny_runs(server: Server, token: str, count: int, **training: Any) -> list[int]:
    """Register config ``tiny`` (the tiny-cpu preset, LEAN, ``training`` over it; sequences of
    32 tokens), then queue ``count`` runs of it."""
    doc = server.get("/presets/tiny-cpu", token).json()
    doc["training"].update(LEAN | training)
    doc["data"]["seq_len"] = 32
    created = server.post("/configs", token, {"name": "tiny", "config": doc})
    assert created.status_code == 201, created.text
    return queue_runs(server, token, count)


def queue_runs(server: Server, token: str, count: int) -> list[int]:
    """Queue ``count`` more runs of config ``tiny``; their ids."""
    ids = []
    for _ in range(count):
        answer = server.post("/runs", token, {"config": "tiny", "force": True})
        assert answer.status_code == 201, answer.text
        ids.append(int(answer.json()["id"]))
    return ids


def worker(
    url: str, token: str, tracking_uri: str, tmp: Path, name: str, *args: str, **env: str
) -> Proc:
    """A ``registry-worker`` named ``name`` serving the default queue of ``url``."""
    full = {
        "REGISTRY_URL": url,
        "REGISTRY_TOKEN": token,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_ARTIFACT_ROOT": str(tmp / "mlartifacts"),
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    argv = ("--name", name, "--poll-max", "1", *args)
    return start_worker(full, tmp / "logs" / f"{name}.log", *argv, state_dir=tmp / f"s-{name}")


def step_of(server: Server, token: str, run_id: int) -> int | None:
    """The training step a run's last accepted heartbeat reported (0 before the first); None
    once it succeeded."""
    run = server.get(f"/runs/{run_id}", token).json()
    assert run["status"] in ON_THE_WAY, run
    if run["status"] == "succeeded":
        return None
    progress = run.get("progress") or {}
    return int(progress.get("step") or 0) if run["status"] == "running" else 0


def wait_progress(server: Server, token: str, run_ids: list[int], steps: list[int]) -> list[int]:
    """Until each run reports at least its step in ``steps`` (or succeeded); the steps then
    (``STEPS_DONE`` for a run that succeeded)."""

    def reached() -> list[int] | None:
        now = [step_of(server, token, r) for r in run_ids]
        done = [STEPS_DONE if s is None else s for s in now]
        return done if all(d >= want for d, want in zip(done, steps, strict=True)) else None

    return wait_for(reached, RUN_TIMEOUT, f"runs {run_ids} to reach {steps}", poll=0.5)  # type: ignore[no-any-return]


def wait_started(server: Server, token: str, run_ids: list[int]) -> None:
    """Until every run is claimed and its worker reported that it started (its first beat)."""

    def started(run_id: int) -> bool:
        run = server.get(f"/runs/{run_id}", token).json()
        assert run["status"] in ON_THE_WAY, run
        # finished already: it can never be seen running, so say so rather than wait it out
        assert run["status"] != "succeeded", f"run {run_id} ended before it was seen running"
        return run["status"] == "running" and bool(run.get("progress"))

    wait_for(lambda: all(map(started, run_ids)), RUN_TIMEOUT, f"runs {run_ids} to start")


def failed_calls(workers: list[Proc], what: str = "cannot reach the registry") -> int:
    """How many calls to the service (heartbeats, reports, claims) the workers' logs say
    failed with ``what``."""
    return sum(w.output().count(what) for w in workers)


def wait_succeeded(server: Server, token: str, run_id: int, *logs: Proc) -> dict[str, Any]:
    """The run once it succeeded; fails at once if it failed or was cancelled."""

    def done() -> dict[str, Any] | None:
        try:
            run = server.get(f"/runs/{run_id}", token).json()
        except Exception:  # the service restarting: ask again
            return None
        assert run["status"] in ON_THE_WAY, (run, *(p.output() for p in logs))
        return run if run["status"] == "succeeded" else None

    return wait_for(done, RUN_TIMEOUT, f"run {run_id} to succeed", poll=0.3)  # type: ignore[no-any-return]


def mlflow_runs(tracking_uri: str, experiment: str, run_id: int) -> list[Any]:
    """Every MLflow run tagged with registry run ``run_id``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    query = f"tags.`registry.run_id` = '{run_id}'"
    return list(client.search_runs([found.experiment_id], query))


def assert_one_result(run: dict[str, Any], tracking_uri: str, attempt: int = 1) -> None:
    """Nothing lost, nothing doubled: succeeded once, as ``attempt``, with one FINISHED MLflow
    run (the one the registry names) and none left RUNNING."""
    assert (run["status"], run["attempt"]) == ("succeeded", attempt), run
    assert {"train_loss", "val_loss"} <= run["metrics"].keys()
    tracked = mlflow_runs(tracking_uri, run["config"], run["id"])
    assert [(r.info.run_id, r.info.status) for r in tracked] == [(run["mlflow_run_id"], "FINISHED")]


def reported(proc: Proc, run_id: int) -> int:
    """How many times ``proc``'s log says it reported ``run_id``."""
    return proc.output().count(f"run={run_id} reported succeeded")


def elapsed(since: float) -> float:
    """Seconds since the monotonic ``since``, rounded for a report line."""
    return round(time.monotonic() - since, 2)
