"""The systemd units of deploy/systemd: `systemd-analyze verify` finds nothing, the settings
docs/deploy.md promises are there, and each ExecStart is a command line the program takes."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.support.dbs import postgres_database
from tests.support.procs import ROOT, Proc, free_port, start, wait_for
from worker.daemon import parse_args
from worker.failures import DEVICE_EXIT

UNITS = ROOT / "deploy" / "systemd"
VENV_IN_UNITS = "/opt/config-registry/venv"
ANALYZE = shutil.which("systemd-analyze")


def parse_unit(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (a unit may repeat a key)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def one(unit: dict[str, list[str]], key: str) -> str:
    values = unit[key]
    assert len(values) == 1, (key, values)
    return values[0]


def environment(unit: dict[str, list[str]]) -> dict[str, str]:
    pairs = [p for line in unit["Service.Environment"] for p in shlex.split(line)]
    return dict(p.split("=", 1) for p in pairs)


def rendered(tmp_path: Path) -> Path:
    """The units with this checkout's venv in place of /opt/config-registry/venv, so that
    `verify` finds every ExecStart program."""
    folder = tmp_path / "units"
    folder.mkdir()
    for unit in UNITS.glob("*.service"):
        text = unit.read_text(encoding="utf-8").replace(VENV_IN_UNITS, str(Path(sys.prefix)))
        (folder / unit.name).write_text(text, encoding="utf-8")
    return folder


def verify(folder: Path, *names: str) -> subprocess.CompletedProcess[str]:
    if ANALYZE is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI needs systemd-analyze (make systemd)", pytrace=False)
        pytest.skip("needs systemd-analyze: Debian's systemd package (make systemd)")
    args = [ANALYZE, "verify", "--man=no", *(str(folder / n) for n in names)]
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


GPU_GROUP = (
    subprocess.run(
        ["systemd-escape", "2,3"], capture_output=True, text=True, check=False
    ).stdout.strip()
    or r"2\x2c3"
)


def test_every_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    folder = rendered(tmp_path)
    names = ["registry.service", "registry-mlflow.service", "registry-worker@0.service"]
    names.append(f"registry-worker@{GPU_GROUP}.service")
    done = verify(folder, *names)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_reports_what_a_broken_unit_gets_wrong(tmp_path: Path) -> None:
    """What the check above relies on: a misspelt key and a missing program are reported."""
    folder = rendered(tmp_path)
    unit = folder / "registry-worker@.service"
    text = unit.read_text(encoding="utf-8").replace("Restart=on-failure", "Restat=on-failure")
    unit.write_text(text.replace(str(Path(sys.prefix)), "/nonexistent"), encoding="utf-8")
    done = verify(folder, "registry-worker@0.service")
    assert done.returncode != 0
    assert "Unknown key 'Restat'" in done.stderr and "/nonexistent" in done.stderr


def test_the_worker_unit_stops_warm_drains_on_reload_and_reads_its_token_file() -> None:
    unit = parse_unit(UNITS / "registry-worker@.service")
    env = environment(unit)
    assert env["CUDA_VISIBLE_DEVICES"] == "%I"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # the numbers nvidia-smi shows
    assert env["REGISTRY_TOKEN_FILE"] == "%d/registry-token"
    assert "REGISTRY_TOKEN" not in env
    assert one(unit, "Service.LoadCredential").startswith("registry-token:/")
    assert one(unit, "Service.ExecReload") == "/bin/kill -USR1 $MAINPID"
    assert one(unit, "Service.KillSignal") == "SIGTERM"
    assert one(unit, "Service.KillMode") == "mixed"  # SIGTERM to the daemon, not its children
    assert int(one(unit, "Service.TimeoutStopSec")) >= 120  # a step and a checkpoint upload
    assert one(unit, "Service.Restart") == "on-failure"  # a drain's exit 0 stays stopped
    assert DEVICE_EXIT != 2  # a device error's exit is restarted with a fresh CUDA context
    assert one(unit, "Service.RestartPreventExitStatus") == "2"


def expand(line: str, env: dict[str, str], specifiers: dict[str, str]) -> list[str]:
    """An ExecStart line as systemd runs it: specifiers, then ``${VAR}`` as one word each."""
    for spec, value in specifiers.items():
        line = line.replace(spec, value)
    words = shlex.split(line)
    return [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], w) for w in words]


def test_the_worker_exec_start_is_a_command_line_the_worker_takes() -> None:
    unit = parse_unit(UNITS / "registry-worker@.service")
    specifiers = {"%I": "2,3", "%i": GPU_GROUP, "%H": "gpu-host", "%S": "/var/lib", "%%": "%"}
    argv = expand(one(unit, "Service.ExecStart"), environment(unit), specifiers)
    assert argv[0] == f"{VENV_IN_UNITS}/bin/registry-worker"
    args = parse_args(argv[1:])
    assert (args.gpus, args.queues, args.drain) == ("2,3", ["default"], False)
    assert args.name == "gpu-host-gpu2,3"
    assert args.state_dir == Path("/var/lib/registry-worker")


def test_the_service_and_mlflow_exec_starts_name_options_their_programs_have() -> None:
    for name, prefix in (("registry.service", 2), ("registry-mlflow.service", 2)):
        unit = parse_unit(UNITS / name)
        argv = expand(one(unit, "Service.ExecStart"), dict.fromkeys(_vars(unit), "x"), {})
        program = Path(sys.prefix) / "bin" / Path(argv[0]).name
        helped = subprocess.run(
            [str(program), *argv[1:prefix], "--help"], capture_output=True, text=True, timeout=120
        )
        assert helped.returncode == 0, helped.stderr
        for option in (w for w in argv[prefix:] if w.startswith("--")):
            assert option in helped.stdout, (name, option)


def _vars(unit: dict[str, list[str]]) -> set[str]:
    return set(re.findall(r"\$\{(\w+)\}", one(unit, "Service.ExecStart")))


@pytest.mark.slow
@pytest.mark.postgres
def test_the_mlflow_unit_serves_a_postgresql_store_and_the_shared_artifacts(tmp_path: Path) -> None:
    """The unit's own ExecStart, run: a run logged over HTTP lands in PostgreSQL, its artifact
    in the artifact destination, uploaded through the server (no shared file system)."""
    from mlflow.tracking import MlflowClient

    unit = parse_unit(UNITS / "registry-mlflow.service")
    port = free_port()
    with postgres_database() as db_url:
        env = {
            **environment(unit),
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(port),
            "MLFLOW_WORKERS": "1",
            "MLFLOW_BACKEND_STORE_URI": db_url,
            "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"),
            "MLFLOW_ALLOWED_HOSTS": f"127.0.0.1:{port}",
        }
        argv = expand(one(unit, "Service.ExecStart"), env, {})
        argv[0] = str(Path(sys.prefix) / "bin" / Path(argv[0]).name)
        server = start(argv, {}, tmp_path / "mlflow.log", cwd=tmp_path)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url, server), 180, "mlflow server to answer /health", poll=0.5)

        client = MlflowClient(url)
        experiment = client.create_experiment("deploy-check")
        run = client.create_run(experiment).info
        client.log_metric(run.run_id, "train_loss", 1.5, step=1)
        client.log_text(run.run_id, "hello", "notes/hello.txt")
        client.set_terminated(run.run_id)
        assert run.artifact_uri.startswith("mlflow-artifacts:")
        stored = list((tmp_path / "artifacts").rglob("hello.txt"))
        assert [p.read_text() for p in stored] == ["hello"]
        engine = create_engine(db_url)
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT status FROM runs WHERE run_uuid = :r"), {"r": run.run_id}
            )
            assert found.scalar() == "FINISHED"
        engine.dispose()
        server.stop()


def _healthy(url: str, server: Proc) -> bool:
    assert server.popen.poll() is None, server.output()
    try:
        return requests.get(f"{url}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False
