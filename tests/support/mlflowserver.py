"""A real ``mlflow server`` for one test: one worker, a SQLite store and served artifacts under
the test's folder, on a port the test chooses (so it can be stopped and started again there)."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.support.procs import BIN, Proc, start, wait_for

#: FACTS.md: about 14 s to become healthy on a quiet machine; a loaded one takes longer.
HEALTHY_WITHIN_S = 180


def start_mlflow(root: Path, port: int, log: Path) -> Proc:
    """``mlflow server`` on 127.0.0.1:``port`` with its store under ``root``; returns once
    ``/health`` answers."""
    args = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    proc = start(args, {}, log)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"mlflow server exited; log:\n{proc.output()}")
        try:
            return requests.get(f"{url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(healthy, HEALTHY_WITHIN_S, "mlflow server to answer /health", poll=0.5)
    return proc


def refused(port: int) -> bool:
    """True when nothing answers on ``port`` any more."""
    try:
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    except requests.ConnectionError:
        return True
    return False
