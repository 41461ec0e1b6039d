"""The `registry` command in subprocesses: db upgrade, token create, serve (gunicorn), submit,
export; and 20 concurrent HTTP clients against the real server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import requests
import yaml

from registry.client import Client
from registry.document import spec
from registry.errors import Unauthorized
from tests.support.procs import SECRET_KEY

pytestmark = pytest.mark.slow


def registry_exe() -> str:
    exe = Path(sys.executable).with_name("registry")
    found = str(exe) if exe.exists() else shutil.which("registry")
    if not found:
        pytest.skip("the `registry` command is not installed (pip install -e .)")
    return found


def run(args: list[str], env: dict[str, str], cwd: Path, ok: bool = True) -> Any:
    result = subprocess.run(
        [registry_exe(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if ok:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DATABASE_"))}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_command_is_on_the_one_group() -> None:
    from click.testing import CliRunner

    from registry.cli import main as cli

    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    for command in (
        "db",
        "token",
        "serve",
        "submit",
        "export",
        "runs",
        "reproduce",
        "demo",
        "user",
    ):
        assert command in result.output


def test_global_options_reach_the_command_settings() -> None:
    from click.testing import CliRunner

    from registry.cli import main as cli
    from registry.cli.context import current_settings

    @click.command("hello")
    def hello() -> None:
        click.echo(current_settings().server_url)

    group = click.Group(
        commands={**cli.main.commands, "hello": hello},
        params=cli.main.params,
        callback=cli.main.callback,
    )
    out = CliRunner().invoke(group, ["--server", "http://h:1", "hello"])
    assert out.exit_code == 0 and out.output.strip() == "http://h:1"


def test_db_upgrade_and_token_create(tmp_path: Path) -> None:
    db_file = tmp_path / "deep" / "folder" / "reg.db"
    env = base_env(DATABASE_URL=f"sqlite:///{db_file}")
    run(["db", "upgrade"], env, tmp_path)
    assert db_file.exists()
    run(["db", "upgrade"], env, tmp_path)  # idempotent
    out = run(["token", "create", "--name", "ci", "--role", "viewer"], env, tmp_path).stdout
    token = out.strip().splitlines()[-1]
    assert token.startswith("cr_") and " " not in token
    bad = run(["token", "create", "--name", "x", "--role", "root"], env, tmp_path, ok=False)
    assert bad.returncode != 0 and "root" in bad.stderr


def test_default_database_is_var_under_the_working_directory(tmp_path: Path) -> None:
    run(["db", "upgrade"], base_env(), tmp_path)
    assert (tmp_path / "var" / "registry.db").exists()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated SQLite database and `registry serve` (gunicorn) on a free port."""
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'reg.db'}")
    run(["db", "upgrade"], env, tmp_path)
    admin = run(["token", "create", "--name", "admin", "--role", "admin"], env, tmp_path)
    viewer = run(["token", "create", "--name", "viewer", "--role", "viewer"], env, tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [registry_exe(), "serve", "--port", str(port), "--workers", "2"],
        env={**env, "REGISTRY_SECRET_KEY": SECRET_KEY},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/api/v1/health", timeout=1).json() == {"status": "ok"}:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not come up in 30 s"
            time.sleep(0.2)
        yield {
            **env,
            "REGISTRY_URL": url,
            "REGISTRY_TOKEN": admin.stdout.strip().splitlines()[-1],
            "VIEWER_TOKEN": viewer.stdout.strip().splitlines()[-1],
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert "gunicorn" in (tmp_path / "serve.log").read_text().lower()


def test_serve_submit_export(server: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text("training:\n  learning_rate: 2.0e-5\ngeneration:\n  temperature: 1.5\n")
    out = run(["submit", str(config), "--name", "tiny", "-m", "first"], server, tmp_path).stdout
    assert "tiny version 1 (created)" in out
    assert f"hash {spec.config_hash(spec.normalize(yaml.safe_load(config.read_text())))}" in out
    assert "warning: generation.temperature" in out

    again = run(
        ["submit", str(config), "--name", "tiny", "--enqueue", "train", "--on-oom", "remedy"],
        server,
        tmp_path,
    ).stdout
    assert "tiny version 1 (unchanged" in again
    queued = int(again.split("queued train run ")[1].split()[0])
    shown = run(["runs", "show", str(queued)], server, tmp_path).stdout
    assert "on_oom: remedy" in shown

    as_json = tmp_path / "tiny.json"
    as_json.write_text('{"training": {"learning_rate": 4e-5}}')
    assert (
        "version 2 (created)"
        in run(["submit", str(as_json), "--name", "tiny"], server, tmp_path).stdout
    )

    exported = run(["export", "tiny@1"], server, tmp_path).stdout
    assert yaml.safe_load(exported) == spec.normalize(yaml.safe_load(config.read_text()))
    latest = run(["export", "tiny", "--format", "json"], server, tmp_path).stdout
    assert spec.parse_document(latest, "json") == spec.normalize(
        {"training": {"learning_rate": 4e-5}}
    )

    missing = run(["export", "nope@1"], server, tmp_path, ok=False)
    assert missing.returncode == 1 and "error:" in missing.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  model_dim: 100\n  num_attention_heads: 8\n")
    refused = run(["submit", str(bad), "--name", "tiny"], server, tmp_path, ok=False)
    assert refused.returncode == 1 and "model." in refused.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("training: [1,\n")
    parse = run(["submit", str(broken), "--name", "tiny"], server, tmp_path, ok=False)
    assert parse.returncode == 1 and "line" in parse.stderr

    viewer = {**server, "REGISTRY_TOKEN": server["VIEWER_TOKEN"]}
    denied = run(["submit", str(config), "--name", "other"], viewer, tmp_path, ok=False)
    assert denied.returncode == 1 and "may not" in denied.stderr
    nobody = {**server, "REGISTRY_TOKEN": "cr_wrong"}
    assert run(["export", "tiny"], nobody, tmp_path, ok=False).returncode == 1


def test_twenty_http_clients_at_once(server: dict[str, str]) -> None:
    url, token = server["REGISTRY_URL"], server["REGISTRY_TOKEN"]
    with Client(url, token) as c:
        c.create_config("race", {})
    barrier = threading.Barrier(20)
    results: list[Any] = [None] * 40

    def one(i: int) -> None:
        with Client(url, token) as c:  # each thread its own HTTP client and connection
            barrier.wait()
            results[i] = c.add_version("race", {"training": {"seed": 1000 + i}})
            results[20 + i] = c.add_version("race", {"training": {"seed": 7}})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    distinct = sorted(r["version"] for r in results[:20])
    assert all(r["created"] for r in results[:20])
    same = results[20:]
    assert sum(r["created"] for r in same) == 1 and len({r["version"] for r in same}) == 1
    with Client(url, token) as c:
        versions = [v["version"] for v in c.get_config("race")["versions"]]
    assert versions == list(range(1, 23))
    assert set(distinct) | {same[0]["version"]} == set(range(2, 23))
    with Client(url, "cr_wrong") as c, pytest.raises(Unauthorized):
        c.get_config("race")


def test_an_unreadable_setting_is_one_line_naming_it_not_a_traceback(tmp_path: Path) -> None:
    env = base_env(REGISTRY_RUNS_PER_MINUTE="lots")
    bad = run(["export", "x"], env, tmp_path, ok=False)
    assert bad.returncode == 2, bad.stderr
    assert "REGISTRY_RUNS_PER_MINUTE" in bad.stderr and "Traceback" not in bad.stderr
