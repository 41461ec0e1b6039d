"""A device error ends the daemon: the run goes back to the queue (on its last attempt it is
failed), the daemon exits 3 for its supervisor to restart it with a fresh CUDA context. Out of
memory stays a run failure. Against the real service over HTTP, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine

from registry.client import Client
from registry.db import make_session_factory, transaction
from registry.models import Config, ConfigVersion
from registry.services.indexing import index_version
from tests.support.procs import serve_in_thread
from worker.daemon import Daemon, Options, StopSignal
from worker.execute import Result
from worker.failures import DEVICE_EXIT

ILLEGAL_ACCESS = (
    "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
    "asynchronously reported at some other API call, so the stacktrace below might be "
    "incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with "
    "`TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)


@pytest.fixture
def url(app: Flask, engine: Engine) -> Iterator[str]:
    with transaction(make_session_factory(engine)) as s:
        for name, gpus in (("one", 1), ("two", 2)):
            doc = {"training": {"seed": 7}, "resources": {"gpus": gpus}}
            version = ConfigVersion(
                config=Config(name=name), version=1, hash=name * 21 + "x", document=doc
            )
            s.add(version)
            s.flush()
            index_version(s, version)
    with serve_in_thread(app) as base:
        yield base


def api(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    answer = requests.request(method, f"{url}/api/v1{path}", json=body, headers=headers, timeout=10)
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def daemon(url: str, token: str, execute: Any, tmp_path: Path, **options: Any) -> Daemon:
    opts = Options(state_dir=tmp_path / "state", once=True, poll_min=0.05, name="gpu-w", **options)
    clients = Client(url, token, retries=0), Client(url, token, retries=0)
    return Daemon(*clients, execute, None, "cpu", opts, StopSignal())


def raising(message: str) -> Any:
    def execute(*_args: Any) -> Result:
        exc = RuntimeError(message)  # what torch raises at the next CUDA call
        exc.mlflow_run_id = "mlf-x"  # type: ignore[attr-defined]
        raise exc

    return execute


def test_a_device_error_hands_the_run_back_and_ends_the_daemon_until_the_last_attempt(
    url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    run = api(url, tokens["admin"], "POST", "/runs", {"config": "one"})
    for attempt in (1, 2):  # a fresh daemon each time, as systemd restarts it
        assert daemon(url, tokens["worker"], raising(ILLEGAL_ACCESS), tmp_path).work() == 3
        now = api(url, tokens["viewer"], "GET", f"/runs/{run['id']}")
        assert (now["status"], now["attempt"], now["error"]) == ("queued", attempt + 1, None)
    assert daemon(url, tokens["worker"], raising(ILLEGAL_ACCESS), tmp_path).work() == DEVICE_EXIT
    last = api(url, tokens["viewer"], "GET", f"/runs/{run['id']}")
    assert (last["status"], last["attempt"], last["error"]["kind"]) == ("failed", 3, "device_error")
    assert last["error"]["message"].startswith("CUDA error: an illegal memory access")
    assert "not the config" in last["error"]["hint"]


def test_out_of_memory_is_the_runs_failure_and_the_daemon_goes_on(
    url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    ids = [api(url, tokens["admin"], "POST", "/runs", {"config": "one"})["id"] for _ in range(2)]
    oom = raising("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
    worker = daemon(url, tokens["worker"], oom, tmp_path)
    worker.options.once, worker.options.max_runs = False, 2
    assert worker.work() == 0
    for run_id in ids:
        failed = api(url, tokens["viewer"], "GET", f"/runs/{run_id}")
        assert (failed["status"], failed["error"]["kind"]) == ("failed", "out_of_memory")
        assert failed["error"]["remedies"]


def test_a_one_gpu_daemon_leaves_a_two_gpu_run_for_another_worker(
    url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    two = api(url, tokens["admin"], "POST", "/runs", {"config": "two"})
    seen: list[int] = []

    def execute(job: dict[str, Any], *_args: Any) -> Result:
        seen.append(job["run"]["id"])
        return Result("succeeded", {}, {}, "mlf-1")

    assert daemon(url, tokens["worker"], execute, tmp_path, devices=1).work() == 0
    assert seen == []  # the queue held nothing for one GPU
    assert daemon(url, tokens["worker"], execute, tmp_path, devices=2).work() == 0
    assert seen == [two["id"]]
