"""The worker reads `file:` datasets from inside REGISTRY_DATA_ROOT only.

What an outsider who may submit configs tries: name a file elsewhere on the GPU machine (the
worker's own environment, an SSH key) directly, through `..`, or through a symlink inside the
root. Every such run fails with one error naming data.dataset, the same one as for a missing
file, and nothing of the file reaches the run, its error or MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from mlflow.tracking import MlflowClient

from registry.client import Client
from registry.settings import Settings
from tests.support.procs import serve_in_thread
from tests.support.worker import TINY, make_job, tiny_doc
from worker import data
from worker.daemon import Daemon, Options, StopSignal, warm_up
from worker.execute import execute
from worker.failures import describe_error

SECRET = b"REGISTRY_TOKEN=cr_this-must-never-leave-the-machine\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data root with one good corpus, next to a secret file outside it."""
    root = tmp_path / "data"
    (root / "team").mkdir(parents=True)
    (root / "team" / "corpus.txt").write_bytes(data.load_corpus("builtin:pydoc")[:60_000])
    (tmp_path / "secret.env").write_bytes(SECRET)
    return root


def refusal(dataset: str, root: Path) -> dict[str, Any]:
    """What the run would record for `dataset`: describe_error of the refusal."""
    with pytest.raises(data.DatasetError) as info:
        data.load_corpus(dataset, root)
    return describe_error(info.value)


def test_a_file_inside_the_root_loads(root: Path) -> None:
    assert (
        data.load_corpus("file:team/corpus.txt", root)[:20]
        == (root / "team/corpus.txt").read_bytes()[:20]
    )
    (root / "alias.txt").symlink_to(root / "team" / "corpus.txt")  # a link that stays inside
    assert data.load_corpus("file:alias.txt", root) == (root / "team/corpus.txt").read_bytes()
    # The root itself may be reached through a symlink.
    (root.parent / "root-link").symlink_to(root)
    assert data.load_corpus("file:team/corpus.txt", root.parent / "root-link")


def test_escapes_fail_exactly_like_a_missing_file(root: Path) -> None:
    secret = root.parent / "secret.env"
    (root / "leak.txt").symlink_to(secret)
    (root / "team" / "up").symlink_to(root.parent)  # a folder link out of the root
    missing = refusal("file:no-such.txt", root)
    for dataset in (
        "file:leak.txt",
        "file:team/up/secret.env",
        "file:../secret.env",
        "file:team/../../secret.env",
        f"file:{secret}",
        "file:~/secret.env",
        "file:/proc/self/environ",
        "file:leak.txt\x00",
    ):
        described = refusal(dataset, root)
        assert (
            "data.dataset" in described["message"] and "REGISTRY_DATA_ROOT" in described["message"]
        )
        assert described["message"] == missing["message"].replace("no-such.txt", dataset[5:])
        # One raise site, no chained OSError: the traceback is no oracle either.
        assert described["traceback"].replace(dataset[5:], "X") == missing["traceback"].replace(
            "no-such.txt", "X"
        )
        assert SECRET.decode().strip() not in str(described)
        assert "No such file" not in described["traceback"]


def test_folders_and_fifos_are_refused_without_hanging(root: Path) -> None:
    os.mkfifo(root / "pipe.txt")
    for dataset in ("file:team", "file:pipe.txt", "file:."):
        assert "REGISTRY_DATA_ROOT" in refusal(dataset, root)["message"]


def test_a_run_on_a_file_inside_the_root_trains(root: Path, tracker_factory, tmp_path) -> None:
    doc = tiny_doc(data={"dataset": "file:team/corpus.txt"}, training={"num_training_steps": 4})
    result = execute(
        make_job(doc, name="inside"),
        tracker_factory(),
        "cpu",
        lambda: False,
        lambda _: None,
        tmp_path / "work",
        data_root=root,
    )
    assert result.status == "succeeded" and result.metrics["train_loss"] > 0
    expected = data.dataset_sha256((root / "team" / "corpus.txt").read_bytes())
    assert result.provenance["dataset_sha256"] == expected


@pytest.fixture
def url(app: Flask) -> Iterator[str]:
    with serve_in_thread(app) as base:
        yield base


def test_the_daemon_fails_a_run_that_links_outside_its_root(
    url: str, tokens: dict[str, str], settings: Settings, root: Path, tmp_path: Path
) -> None:
    """The real daemon, its REGISTRY_DATA_ROOT from settings, against the real service."""
    (root / "leak.txt").symlink_to(root.parent / "secret.env")
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    config = {**TINY, "data": {**TINY["data"], "dataset": "file:leak.txt"}}
    created = requests.post(
        f"{url}/api/v1/configs", json={"name": "leak", "config": config}, headers=admin, timeout=10
    )
    assert created.status_code == 201, created.text  # a relative name: the service cannot tell
    run = requests.post(f"{url}/api/v1/runs", json={"config": "leak"}, headers=admin, timeout=10)
    execute_, tracker = warm_up(settings.with_(data_root=str(root)))
    options = Options(state_dir=tmp_path / "state", once=True, poll_max=0.2, name="w-root")
    with Client(url, tokens["worker"]) as client:
        daemon = Daemon(client, client, execute_, tracker, "cpu", options, StopSignal())
        assert daemon.work() == 0
    done = requests.get(f"{url}/api/v1/runs/{run.json()['id']}", headers=admin, timeout=10).json()
    assert done["status"] == "failed", done
    assert "data.dataset" in done["error"]["message"]
    assert SECRET.decode().strip() not in str(done)
    mlflow = MlflowClient(settings.mlflow_tracking_uri)
    artifacts = mlflow.list_artifacts(done["mlflow_run_id"])
    assert "samples.txt" not in [a.path for a in artifacts]
