"""The whole path with real parts: ``registry serve``, ``registry-worker`` processes, a real
MLflow SQLite store read back with MlflowClient, and the tiny-cpu preset."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from registry.db import make_session_factory
from registry.models import Run
from registry.settings import Settings
from tests.support.procs import BIN, ROOT, Proc, Server, start, start_server, start_worker, wait_for

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 300  # seconds for one tiny training; generous for a loaded 2-core machine


@pytest.fixture
def stack(
    settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., Server]]:
    """``stack(lease_seconds=60)`` starts ``registry serve`` on the test database."""
    started: list[Server] = []

    def make(lease_seconds: int = 60, workers: int = 2) -> Server:
        env = {"DATABASE_URL": settings.database_url, "REGISTRY_LEASE_SECONDS": str(lease_seconds)}
        server = start_server(env, tmp_path / "logs" / "server.log", workers=workers)
        started.append(server)
        return server

    yield make
    for server in started:
        server.proc.stop()


def worker_env(server: Server, settings: Settings, token: str) -> dict[str, str]:
    return {
        "REGISTRY_URL": server.url,
        "REGISTRY_TOKEN": token,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
        "HF_HUB_OFFLINE": "1",
    }


def worker(
    server: Server,
    settings: Settings,
    tokens: dict[str, str],
    tmp_path: Path,
    name: str,
    *args: str,
) -> Proc:
    env = worker_env(server, settings, tokens["worker"])
    return start_worker(
        env,
        tmp_path / "logs" / f"{name}.log",
        "--name",
        name,
        "--poll-max",
        "1",
        *args,
        state_dir=tmp_path / f"state-{name}",
    )


def register_tiny(server: Server, token: str, name: str = "tiny", **training: Any) -> int:
    """The tiny-cpu preset (with ``training`` changes) as config ``name``; its version."""
    doc = server.get("/presets/tiny-cpu", token).json()
    doc["training"].update(training)
    answer = server.post("/configs", token, {"name": name, "config": doc})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["version"])


def queue_run(server: Server, token: str, **body: Any) -> dict[str, Any]:
    answer = server.post("/runs", token, {"config": "tiny", **body})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def get_run(server: Server, token: str, run_id: int) -> dict[str, Any]:
    return server.get(f"/runs/{run_id}", token).json()  # type: ignore[no-any-return]


def wait_status(
    server: Server, token: str, run_id: int, status: str, *procs: Proc, timeout: float = RUN_TIMEOUT
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = get_run(server, token, run_id)
        if run["status"] in ("failed", "cancelled") and status != run["status"]:
            logs = "\n".join(p.output() for p in procs)
            raise AssertionError(f"run {run_id} is {run['status']}: {run['error']}\n{logs}")
        return run if run["status"] == status else None

    try:
        return wait_for(reached, timeout, f"run {run_id} to be {status}", poll=0.3)
    except AssertionError:
        print("\n".join(p.output() for p in procs))
        raise


def wait_training(server: Server, token: str, run_id: int, proc: Proc) -> dict[str, Any]:
    """Wait until the run's heartbeat shows it training (its MLflow run exists)."""

    def training() -> dict[str, Any] | None:
        run = get_run(server, token, run_id)
        assert run["status"] in ("queued", "running"), (run, proc.output())
        progress = run.get("progress") or {}
        return run if progress.get("mlflow_run_id") and progress.get("phase") == "train" else None

    return wait_for(training, RUN_TIMEOUT, f"run {run_id} to be training", poll=0.2)


def mlflow(settings: Settings) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.mlflow_tracking_uri)


def cli(server: Server, token: str, *args: str) -> str:
    env = {**os.environ, "REGISTRY_URL": server.url, "REGISTRY_TOKEN": token}
    done = subprocess.run(
        [str(BIN / "registry"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


CONTRACT_METRICS = (
    "train_loss",
    "val_loss",
    "val_perplexity",
    "val_accuracy",
    "tokens_per_second",
    "gen_distinct_2",
    "gen_repetition_rate",
)
CONTRACT_PROVENANCE = (
    "seed",
    "config_hash",
    "python",
    "torch",
    "transformers",
    "mlflow",
    "device",
    "dataset_sha256",
    "code_version",
)


def test_train_evaluate_and_reproduce(
    stack: Callable[..., Server], settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    """Train, then evaluate v2's generation settings on that model, and reproduce the train
    run bit for bit; all through one real worker, checked in the registry and in MLflow."""
    server = stack()
    admin = tokens["admin"]
    register_tiny(server, admin)
    train = queue_run(server, admin)
    proc = worker(server, settings, tokens, tmp_path, "w1", "--max-runs", "3")
    trained = wait_status(server, admin, train["id"], "succeeded", proc)
    assert set(CONTRACT_METRICS) <= set(trained["metrics"])
    assert set(CONTRACT_PROVENANCE) <= set(trained["provenance"])
    assert trained["provenance"]["config_hash"] == trained["config_hash"]

    doc = server.get("/configs/tiny/versions/1", admin).json()["config"]
    doc["generation"]["temperature"] = 1.0
    v2 = server.post("/configs/tiny/versions", admin, {"config": doc}).json()["version"]
    evaluate = queue_run(server, admin, kind="evaluate", version=v2, from_run=train["id"])
    assert "reproducing run" in cli(server, admin, "reproduce", str(train["id"]))
    listed = json.loads(cli(server, admin, "runs", "list", "--json", "--limit", "5"))
    reproduced = next(r for r in listed if r["reproduces"] == train["id"])
    evaluated = wait_status(server, admin, evaluate["id"], "succeeded", proc)
    copy = wait_status(server, admin, reproduced["id"], "succeeded", proc)
    assert proc.wait(60) == 0

    assert {"val_loss", "gen_distinct_2"} <= set(evaluated["metrics"])
    assert "train_loss" not in evaluated["metrics"]
    # Reproduced on the CPU: the same losses, bit for bit.
    assert copy["metrics"]["train_loss"] == trained["metrics"]["train_loss"]
    assert copy["seed"] == trained["seed"] and copy["version"] == trained["version"]

    client = mlflow(settings)
    for run in (trained, evaluated, copy):
        found = client.get_run(run["mlflow_run_id"])
        assert found.info.status == "FINISHED"
        tags = found.data.tags
        assert (tags["registry.run_id"], tags["registry.attempt"]) == (str(run["id"]), "1")
        assert tags["registry.config_hash"] == run["config_hash"]
    history = [
        [m.value for m in client.get_metric_history(r["mlflow_run_id"], "train_loss")]
        for r in (trained, copy)
    ]
    assert history[0] and history[0] == history[1]
    eval_tags = client.get_run(evaluated["mlflow_run_id"]).data.tags
    assert eval_tags["registry.from_run"] == str(train["id"])
    shown = cli(server, admin, "runs", "show", str(train["id"]))
    assert "succeeded" in shown and trained["mlflow_run_id"] in shown

    # The reproduction is verified and queryable; the CLI pages and prints CSV.
    copy = get_run(server, admin, copy["id"])
    assert copy["identical"] is True and copy["reproduction"]["identical"] is True
    expr = f"reproduces = {train['id']} AND identical = true"
    assert [
        r["id"] for r in server.get("/runs", admin, params={"filter": expr}).json()["runs"]
    ] == [copy["id"]]
    rows = cli(server, admin, "runs", "list", "--format", "csv", "--limit", "1", "--all")
    parsed = list(csv.DictReader(io.StringIO(rows)))
    assert sorted(int(r["id"]) for r in parsed) == sorted(
        [train["id"], evaluated["id"], copy["id"]]
    )
    assert parsed[0]["metrics.val_loss"]


def test_sigterm_hands_the_run_back_and_kills_its_mlflow_run(
    stack: Callable[..., Server], settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    server = stack()
    admin = tokens["admin"]
    register_tiny(server, admin, num_training_steps=3000, eval_every_steps=1000)
    run = queue_run(server, admin)
    proc = worker(server, settings, tokens, tmp_path, "w1")
    training = wait_training(server, admin, run["id"], proc)
    proc.signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.output()
    back = get_run(server, admin, run["id"])
    assert (back["status"], back["attempt"], back["worker"]) == ("queued", 2, None)
    killed = mlflow(settings).get_run(training["progress"]["mlflow_run_id"])
    assert killed.info.status == "KILLED"


def test_kill_9_mid_run_is_finished_by_another_worker_as_attempt_2(
    stack: Callable[..., Server], settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    server = stack(lease_seconds=3)
    admin = tokens["admin"]
    # Long enough (about 15 s on a quiet 2-core machine) that the heartbeat shows the run
    # training before it could finish; the second worker then runs it whole.
    register_tiny(server, admin, num_training_steps=400, eval_every_steps=200)
    run = queue_run(server, admin)
    first = worker(server, settings, tokens, tmp_path, "w1")
    training = wait_training(server, admin, run["id"], first)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(30)
    second = worker(server, settings, tokens, tmp_path, "w2", "--max-runs", "1")
    # Twice the usual wait: attempt 2 trains the whole run again, slow on a loaded machine.
    done = wait_status(server, admin, run["id"], "succeeded", second, timeout=2 * RUN_TIMEOUT)
    assert (done["attempt"], done["worker"]) == (2, "w2")
    assert second.wait(60) == 0
    late = server.post(
        f"/runs/{run['id']}/complete",
        tokens["worker"],
        {"lease": 1, "status": "succeeded", "metrics": {"train_loss": 0.0}},
    )
    assert late.status_code == 409 and late.json()["code"] == "stale_lease"
    assert get_run(server, admin, run["id"]) == done
    client = mlflow(settings)
    lost = client.get_run(training["progress"]["mlflow_run_id"])
    assert (lost.info.status, lost.data.tags["registry.attempt"]) == ("KILLED", "1")
    finished = client.get_run(done["mlflow_run_id"])
    assert (finished.info.status, finished.data.tags["registry.attempt"]) == ("FINISHED", "2")


CLAIMERS = 8
RUNS = 200


@pytest.mark.postgres
def test_8_claimers_take_200_runs_exactly_once(
    stack: Callable[..., Server],
    settings: Settings,
    tokens: dict[str, str],
    tmp_path: Path,
    engine: Engine,
) -> None:
    """8 processes speak the claim/complete API as the daemon does (no training: the queue is
    under test); every run is claimed and completed once, checked from the database."""
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the contention test is for PostgreSQL")
    server = stack(workers=4)
    admin = tokens["admin"]
    register_tiny(server, admin)
    for i in range(RUNS):
        queue_run(server, admin, priority=i % 5)
    outs = [tmp_path / f"claims-{i}.txt" for i in range(CLAIMERS)]
    procs = [
        start(
            [
                sys.executable,
                "-m",
                "tests.support.procs",
                server.url,
                tokens["worker"],
                f"c{i}",
                str(out),
            ],
            {},
            tmp_path / "logs" / f"claimer-{i}.log",
        )
        for i, out in enumerate(outs)
    ]
    for proc in procs:
        assert proc.wait(120) == 0, proc.output()
    claims = [
        (line.split()[0], int(line.split()[1]))
        for out in outs
        for line in out.read_text().splitlines()
    ]
    claimed_ids = [run_id for _, run_id in claims]
    assert len(claimed_ids) == RUNS and len(set(claimed_ids)) == RUNS
    with make_session_factory(engine)() as s:
        rows = s.execute(select(Run.id, Run.status, Run.attempt, Run.mlflow_run_id)).all()
    assert len(rows) == RUNS
    assert {(status, attempt) for _, status, attempt, _ in rows} == {("succeeded", 1)}
    assert {run_id: who for run_id, _, _, who in rows} == {r: w for w, r in claims}


def test_registry_demo_exits_0_with_a_trained_run(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "MLFLOW_TRACKING_URI",
            "MLFLOW_ARTIFACT_ROOT",
            "REGISTRY_URL",
            "REGISTRY_TOKEN",
        )
    }
    done = subprocess.run(
        [str(BIN / "registry"), "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded" in done.stdout and "train_loss" in done.stdout
    line = next(x for x in done.stdout.splitlines() if "MLflow run id:" in x)
    mlflow_run_id = line.split()[3]
    from mlflow.tracking import MlflowClient

    found = MlflowClient(f"sqlite:///{tmp_path / 'var' / 'mlflow.db'}").get_run(mlflow_run_id)
    assert found.info.status == "FINISHED" and "train_loss" in found.data.metrics
