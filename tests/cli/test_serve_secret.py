"""`registry serve` refuses a missing, weak or shipped REGISTRY_SECRET_KEY (exit 2); `make run`
and `registry demo` make their own key once under var/ (mode 0600) and reuse it."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from registry.cli import devstack
from registry.settings import SHIPPED_SECRET_KEYS, Settings
from tests.support.procs import BIN, free_port, start_server

pytestmark = pytest.mark.slow


def serve(tmp_path: Path, key: str | None) -> subprocess.CompletedProcess[str]:
    """`registry serve` in an empty folder (no .env) with ``key`` as the only key it sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'reg.db'}"
    if key is not None:
        env["REGISTRY_SECRET_KEY"] = key
    port = str(free_port())
    return subprocess.run(
        [str(BIN / "registry"), "serve", "--port", port, "--workers", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,  # it must exit, not serve: a hang fails here
    )


@pytest.mark.parametrize(
    "key",
    [None, "", "too-short-to-be-a-key", "x" * 64, *sorted(SHIPPED_SECRET_KEYS)],
    ids=["unset", "empty", "short", "repetitive", *sorted(SHIPPED_SECRET_KEYS)],
)
def test_serve_refuses_a_weak_key(tmp_path: Path, key: str | None) -> None:
    result = serve(tmp_path, key)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "REGISTRY_SECRET_KEY" in result.stderr
    assert "gunicorn" not in (result.stdout + result.stderr).lower()  # it never started


def test_serve_refuses_the_shipped_default_from_a_dot_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REGISTRY_SECRET_KEY=dev-insecure-change-me\n")
    result = serve(tmp_path, None)
    assert result.returncode == 2 and "REGISTRY_SECRET_KEY" in result.stderr


def test_serve_starts_with_a_strong_key(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    subprocess.run(
        [str(BIN / "registry"), "db", "upgrade"],
        env={**os.environ, "DATABASE_URL": db},
        check=True,
        capture_output=True,
    )
    server = start_server({"DATABASE_URL": db}, tmp_path / "serve.log", workers=1)
    try:
        assert requests.get(f"{server.url}/api/v1/health", timeout=5).status_code == 200
    finally:
        server.proc.stop()


def test_the_dev_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    old_umask = os.umask(0)  # even a permissive umask must not widen the file
    try:
        key = devstack.dev_secret_key(var)
    finally:
        os.umask(old_umask)
    path = var / devstack.SECRET_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32 and path.read_text().strip() == key
    assert devstack.dev_secret_key(var) == key  # reused, so sessions survive a restart
    path.chmod(0o644)
    assert devstack.dev_secret_key(var) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened again
    other = tmp_path / "other"
    other.mkdir()
    assert devstack.dev_secret_key(other) != key  # random per stack, not a constant


def test_a_weak_dev_key_file_or_setting_is_refused(tmp_path: Path) -> None:
    (tmp_path / devstack.SECRET_KEY_FILE).write_text("dev-insecure-change-me\n")
    with pytest.raises(RuntimeError, match="REGISTRY_SECRET_KEY"):
        devstack.dev_secret_key(tmp_path)
    with pytest.raises(RuntimeError, match="REGISTRY_SECRET_KEY"):
        devstack.service_secret(Settings(secret_key="dev-insecure-change-me"), tmp_path)
    strong = secrets.token_urlsafe(32)
    assert devstack.service_secret(Settings(secret_key=strong), tmp_path) == strong


def test_only_the_service_child_gets_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_SECRET_KEY", "inherited-" * 4)
    show = [sys.executable, "-c", "import os; print(os.environ.get('REGISTRY_SECRET_KEY'))"]
    worker = devstack.spawn("worker", show, {}, tmp_path / "worker.log")
    service = devstack.spawn(
        "service", show, {devstack.SECRET_ENV: "given-" * 8}, tmp_path / "service.log"
    )
    assert worker.popen.wait(30) == 0 and service.popen.wait(30) == 0
    assert (tmp_path / "worker.log").read_text().strip() == "None"
    assert (tmp_path / "service.log").read_text().strip() == "given-" * 8
