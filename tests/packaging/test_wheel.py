"""The wheel is the product: built, installed in a fresh virtual environment outside the
checkout, it upgrades a database and serves the API and the pages from what it holds.

Nothing is downloaded: the wheel is built without build isolation (setuptools comes from the
test's environment) and installed with ``--no-deps``; the fresh environment then sees the
test environment's third-party packages through a ``.pth`` file written after the install (so
pip never sees, let alone touches, the checkout's editable install). The checkout itself is
on no path of the fresh environment: ``registry`` must come from the wheel.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from alembic.script import ScriptDirectory

import registry.models  # noqa: F401 - fills Base.metadata with every table
from registry.db import Base
from registry.migrations import alembic_config
from tests.support.procs import ROOT, free_port, start, wait_for

pytestmark = pytest.mark.slow

#: What a source distribution would hold: enough to build the wheel, nothing of the checkout's
#: state (no build/ left over from an earlier build, no var/, no virtual environment).
SOURCES = ("pyproject.toml", "README.md", "registry", "worker")
PACKAGES = ("registry", "worker")


@dataclass(frozen=True)
class Installed:
    """The fresh virtual environment with the wheel installed, and a folder to run it in."""

    wheel: Path
    venv: Path
    workdir: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """An environment with none of the checkout's: no PYTHONPATH, no settings of ours."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DATABASE_URL")
            and not k.startswith(("REGISTRY_", "MLFLOW_"))
        }
        env |= {
            "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            "VIRTUAL_ENV": str(self.venv),
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": "",  # empty: ignored, and it hides any PYTHONPATH start() passes on
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.workdir / 'mlflow.db'}",
        }
        return env | extra

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``args`` in the working folder (outside the checkout); fails on non-zero."""
        done = subprocess.run(
            list(args),
            cwd=self.workdir,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        return done


def _pip(python: Path | str, *args: str, cwd: Path) -> None:
    argv = [str(python), "-m", "pip", *args, "--no-index", "--disable-pip-version-check"]
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip {args[0]} failed:\n{done.stdout}{done.stderr}"


def _site_packages(python: Path | str) -> list[str]:
    code = (
        "import json, sysconfig; p = sysconfig.get_paths(); "
        "print(json.dumps(sorted({p['purelib'], p['platlib']})))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def build_wheel(tmp: Path) -> Path:
    """The wheel of a clean copy of the sources, built offline."""
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp / "wheels"
    _pip(
        sys.executable,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(wheels),
        ".",
        cwd=src,
    )
    (wheel,) = wheels.glob("config_registry-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel, make a fresh venv, install the wheel alone, then lend it our deps."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    _pip(venv / "bin" / "python", "install", "--no-deps", str(wheel), cwd=tmp)
    # Only now: had pip seen the test environment's packages, it would have seen the
    # checkout's editable config-registry too, and uninstalled it to install the wheel.
    own = _site_packages(venv / "bin" / "python")
    lent = [p for p in _site_packages(sys.executable) if p not in own]
    Path(own[0], "zz_test_dependencies.pth").write_text("\n".join(lent) + "\n", encoding="utf-8")
    workdir = tmp / "elsewhere"
    workdir.mkdir()
    return Installed(wheel, venv, workdir)


def test_the_wheel_holds_every_file_of_the_packages(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        held = set(whl.namelist())
    sources = {
        p.relative_to(ROOT).as_posix()
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert sources - held == set(), "files of the packages missing from the wheel"
    # The parts a running service reads that are no Python module, named to be sure.
    for name in (
        "registry/migrations/alembic.ini",
        "registry/migrations/script.py.mako",
        "registry/http/web/templates/login.html",
        "registry/http/web/static/app.css",
    ):
        assert name in held
    assert not [n for n in held if n.startswith(("tests/", "benchmarks/"))]


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    code = (
        "import json, registry, registry.migrations as m, worker; "
        "print(json.dumps([registry.__file__, m.HERE.as_posix(), worker.__file__]))"
    )
    paths = json.loads(installed.run(str(installed.bin / "python"), "-c", code).stdout)
    for path in paths:
        assert Path(path).resolve().is_relative_to(installed.venv.resolve()), path
        assert not Path(path).resolve().is_relative_to(ROOT), path


@pytest.mark.parametrize("command", ["registry", "registry-worker"])
def test_each_command_of_the_wheel_starts(installed: Installed, command: str) -> None:
    out = installed.run(str(installed.bin / command), "--help").stdout
    assert out.lower().startswith("usage:"), out


@pytest.fixture(scope="module")
def upgraded(installed: Installed) -> str:
    """A SQLite database upgraded by the installed ``registry db upgrade``."""
    url = f"sqlite:///{installed.workdir / 'registry.db'}"
    installed.run(str(installed.bin / "registry"), "db", "upgrade", DATABASE_URL=url)
    return url


def test_db_upgrade_from_the_wheel_builds_every_table(installed: Installed, upgraded: str) -> None:
    with sqlite3.connect(installed.workdir / "registry.db") as db:
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert tables >= set(Base.metadata.tables) | {"alembic_version"}
    head = ScriptDirectory.from_config(alembic_config(upgraded)).get_current_head()
    assert revision == head, "the wheel's migrations stop short of the checkout's head"


@pytest.fixture
def served(installed: Installed, upgraded: str, tmp_path: Path) -> Iterator[str]:
    """``registry serve`` of the wheel on a free port; stopped by its PID afterwards."""
    port = free_port()
    args = [str(installed.bin / "registry"), "serve", "--port", str(port), "--workers", "1"]
    env = installed.env(DATABASE_URL=upgraded, REGISTRY_SECRET_KEY=secrets.token_hex(32))
    proc = start(args, env, tmp_path / "serve.log", cwd=installed.workdir)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            if proc.popen.poll() is not None:
                raise AssertionError(f"registry serve exited; log:\n{proc.output()}")
            try:
                return requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, 60, "the installed registry serve to answer /health")
        yield url
    finally:
        proc.stop()


def test_serve_from_the_wheel_answers_the_api_and_renders_pages(served: str) -> None:
    health = requests.get(f"{served}/api/v1/health", timeout=10)
    assert health.json() == {"status": "ok"}
    login = requests.get(f"{served}/login", timeout=10)
    assert login.status_code == 200, login.text[:2000]
    assert 'name="csrf_token"' in login.text
    stylesheet = re.search(r'href="(/static/[^"]+\.css[^"]*)"', login.text)
    assert stylesheet, "the login page links no stylesheet"
    css = requests.get(f"{served}{stylesheet.group(1)}", timeout=10)
    assert css.status_code == 200 and css.content
