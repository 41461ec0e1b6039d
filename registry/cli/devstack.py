"""``make run``: the service, one local worker and the MLflow UI on the embedded default.

``make run`` has already applied the migrations. This creates an admin token (and a worker
token), starts ``registry serve`` on 127.0.0.1:5000, one ``registry-worker`` and ``mlflow
server`` on the SQLite store under ``var/`` (port 5001), prints each URL and the admin token,
and on Ctrl-C stops every child it started, by PID.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy.engine import make_url

from registry.settings import Settings, secret_key_problem

BIN = Path(sys.executable).parent
SERVICE_PORT = 5000
MLFLOW_PORT = 5001
FIRST_PRESET = "tiny-cpu"
FIRST_CONFIG = "tiny-cpu"
#: The stack's own session key, under var/: created once, mode 0600, reused by later runs.
SECRET_KEY_FILE = "secret_key"
SECRET_ENV = "REGISTRY_SECRET_KEY"


@dataclass
class Child:
    """A process this program started (in its own process group) and must stop."""

    name: str
    popen: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM its process group; SIGKILL what is left after ``timeout``."""
        if not self.alive():
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout)
                return
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return


def spawn(name: str, args: Sequence[str], env: Mapping[str, str], log: Path | None) -> Child:
    """Start ``args`` in a new process group, output to ``log`` (or this terminal).

    The session key is passed on only where ``env`` names it (the service): a worker never
    holds it, so a run that leaks its environment cannot leak the key.
    """
    inherited = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child owns it
    try:
        popen = subprocess.Popen(
            list(args),
            env={**inherited, **env},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    finally:
        if out is not None:
            out.close()
    return Child(name, popen)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_healthy(child: Child, url: str, timeout: float) -> None:
    """Wait until ``url`` answers 200; RuntimeError if the child dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with status {child.popen.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f}s")


def child_env(settings: Settings, server_url: str, token: str | None = None) -> dict[str, str]:
    """The settings the children need, spelled out so a .env elsewhere cannot change them."""
    env = {
        "DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
        "REGISTRY_LEASE_SECONDS": str(settings.lease_seconds),
        "REGISTRY_URL": server_url,
        "REGISTRY_DATA_ROOT": str(Path(settings.data_root).resolve()),
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_UI_URL": f"http://127.0.0.1:{MLFLOW_PORT}",
        # Plain http on loopback: a Secure-only session cookie would not come back.
        "REGISTRY_INSECURE_COOKIES": "1",
    }
    if token:
        env["REGISTRY_TOKEN"] = token
    return env


def dev_secret_key(var: Path) -> str:
    """The key in ``var/secret_key``: random, written once with mode 0600, then reused."""
    path = var / SECRET_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)  # tighten a copy whose mode was loosened
        key = path.read_text(encoding="utf-8").strip()
        problem = secret_key_problem(key)
        if problem is not None:
            raise RuntimeError(f"{path}: {problem} (or delete the file for a new key)") from None
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    return key


def service_secret(settings: Settings, var: Path) -> str:
    """REGISTRY_SECRET_KEY when it is set (it must be strong), else the stack's own key."""
    if settings.secret_key is None:
        return dev_secret_key(var)
    problem = secret_key_problem(settings.secret_key)
    if problem is not None:
        raise RuntimeError(f"{problem}, or unset it to use a key made under {var}/")
    return settings.secret_key


def make_tokens(settings: Settings, name: str) -> tuple[str, str]:
    """A new admin token and a new worker token, straight in the database."""
    from registry.db import transaction_at
    from registry.services.auth import create_token

    with transaction_at(settings.database_url) as session:
        admin = create_token(session, f"{name}-admin", "admin")
        worker = create_token(session, f"{name}-worker", "worker")
    return admin, worker


def mlflow_store_path(uri: str) -> str:
    """The file of a SQLite tracking URI, absolute; other URIs as they are."""
    if uri.startswith("sqlite:"):
        database = make_url(uri).database or ""
        return str(Path(database).resolve())
    return uri


def mlflow_ui_command(settings: Settings, port: int = MLFLOW_PORT) -> list[str]:
    """The command that serves the MLflow UI on the registry's tracking store."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:"):
        uri = f"sqlite:///{mlflow_store_path(uri)}"
    artifacts = Path(settings.mlflow_artifact_root).resolve()
    return [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        artifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def start_stack(settings: Settings, var: Path) -> tuple[list[Child], str]:
    """Start the three children; returns them and the admin token."""
    service_url = f"http://127.0.0.1:{SERVICE_PORT}"
    for port in (SERVICE_PORT, MLFLOW_PORT):
        if port_in_use(port):
            raise RuntimeError(f"port {port} is already in use; stop what listens there first")
    secret = service_secret(settings, var)
    admin, worker_token = make_tokens(settings, "devstack")
    env = child_env(settings, service_url)
    children = []
    try:
        service = spawn(
            "registry serve",
            [str(BIN / "registry"), "serve", "--port", str(SERVICE_PORT)],
            {**env, SECRET_ENV: secret},
            var / "service.log",
        )
        children.append(service)
        mlflow = spawn("mlflow server", mlflow_ui_command(settings), env, var / "mlflow.log")
        children.append(mlflow)
        wait_healthy(service, f"{service_url}/api/v1/health", 60)
        # The worker starts after MLflow has created its store: two processes creating one
        # fresh SQLite store at once can trip over each other's migrations.
        wait_healthy(mlflow, f"http://127.0.0.1:{MLFLOW_PORT}/health", 120)
        # The token travels in the environment, not in argv where `ps` would show it.
        worker_env = child_env(settings, service_url, worker_token)
        worker_args = [str(BIN / "registry-worker"), "--state-dir", str(var / "worker")]
        children.append(spawn("registry-worker", worker_args, worker_env, var / "worker.log"))
    except BaseException:
        stop_all(children)
        raise
    return children, admin


def queue_first_run(service_url: str, token: str) -> str:
    """Register the ``tiny-cpu`` preset and queue it, so a newcomer sees a run train at once."""
    from registry import errors
    from registry.client import API, Client
    from registry.document import presets

    client = Client(service_url, token)
    doc = presets.get_preset(FIRST_PRESET).document
    version = client.submit(FIRST_CONFIG, doc, message="make run: the tiny-cpu preset")
    try:
        run = client.request(
            "POST", f"{API}/runs", json={"config": FIRST_CONFIG, "version": version["version"]}
        )
    except errors.Conflict as exc:  # already trained by this code: show that run instead
        return f"already trained by this code: run {exc.extra.get('run')}"
    return (
        f"run {run['id']} of {FIRST_CONFIG}@{run['version']} queued: {service_url}/runs/{run['id']}"
    )


def stop_all(children: Sequence[Child]) -> None:
    """Stop the children, newest first."""
    for child in reversed(children):
        child.stop()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the stack the way Ctrl-C does


def _welcome(first: str, admin: str) -> None:
    """Where everything is, and the admin token."""
    print(
        f"""
  registry (web UI and API)  http://127.0.0.1:{SERVICE_PORT}/
  API                        http://127.0.0.1:{SERVICE_PORT}/api/v1/health
  MLflow UI                  http://127.0.0.1:{MLFLOW_PORT}/
  worker                     1 local registry-worker (log: var/worker.log)
  first run                  {first}

  admin token: {admin}
  sign in to the web UI with the admin token, or from a shell:
        export REGISTRY_TOKEN={admin}
        .venv/bin/registry submit my.yaml --name my-config --enqueue train
        .venv/bin/registry runs list

Ctrl-C stops everything.""",
        flush=True,
    )


def main() -> int:
    """Run the stack until Ctrl-C (or SIGTERM), then stop every child."""
    settings = Settings.from_env()
    var = Path("var")
    var.mkdir(exist_ok=True)
    Path(settings.data_root).mkdir(parents=True, exist_ok=True)  # where file: datasets go
    signal.signal(signal.SIGTERM, _interrupt)
    print("starting the registry, a worker and the MLflow UI (logs under var/) ...", flush=True)
    try:
        children, admin = start_stack(settings, var)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        first = queue_first_run(f"http://127.0.0.1:{SERVICE_PORT}", admin)
    except Exception as exc:  # the stack is still useful without the first run
        first = f"could not queue the first run: {exc}"
    _welcome(first, admin)
    try:
        while all(child.alive() for child in children):
            time.sleep(0.5)
        dead = [c.name for c in children if not c.alive()]
        print(f"error: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _hold_signals()  # a second Ctrl-C or SIGTERM must not cut the shutdown short
        print("\nstopping ...", flush=True)
        return 0
    finally:
        _hold_signals()
        stop_all(children)


def _hold_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
