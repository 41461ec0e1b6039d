"""REGISTRY_TOKEN_FILE: the token read from a file (systemd credentials), strictly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from registry.settings import Settings, TokenFileError
from tests.support.procs import BIN


def token_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def from_env(**env: str) -> Settings:
    return Settings.from_env(env, env_file=None)


@pytest.mark.parametrize("text", ["cr_secret", "cr_secret\n", "cr_secret\r\n"])
def test_the_file_gives_the_token_one_trailing_newline_dropped(tmp_path: Path, text: str) -> None:
    path = token_file(tmp_path, text)
    assert from_env(REGISTRY_TOKEN_FILE=str(path)).token == "cr_secret"


def test_without_a_file_the_environment_token_stays() -> None:
    assert from_env(REGISTRY_TOKEN="cr_env").token == "cr_env"
    assert from_env().token is None


@pytest.mark.parametrize(
    ("text", "mode", "says"),
    [
        ("cr_secret\n", 0o644, "open to group or others (mode 0644)"),
        ("cr_secret\n", 0o640, "chmod 600"),
        ("cr_secret\n", 0o602, "open to group or others"),
        ("", 0o600, "one token and nothing else"),
        ("\n", 0o600, "one token and nothing else"),
        ("cr_a\ncr_b\n", 0o600, "one token and nothing else"),
        ("cr_secret\n\n", 0o600, "one token and nothing else"),
        (" cr_secret", 0o600, "one token and nothing else"),
    ],
)
def test_a_file_that_is_open_or_not_one_token_is_refused(
    tmp_path: Path, text: str, mode: int, says: str
) -> None:
    path = token_file(tmp_path, text, mode)
    with pytest.raises(TokenFileError, match="REGISTRY_TOKEN_FILE") as caught:
        from_env(REGISTRY_TOKEN_FILE=str(path))
    assert says in str(caught.value)
    assert "cr_" not in str(caught.value)  # the token itself is never in a message


def test_a_missing_file_or_a_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match=r"REGISTRY_TOKEN_FILE=.*nope does not exist"):
        from_env(REGISTRY_TOKEN_FILE=str(tmp_path / "nope"))
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(TokenFileError, match=r"REGISTRY_TOKEN_FILE=.* not a regular file"):
        from_env(REGISTRY_TOKEN_FILE=str(folder))


def test_both_at_once_is_refused(tmp_path: Path) -> None:
    path = token_file(tmp_path, "cr_secret\n")
    with pytest.raises(TokenFileError, match="REGISTRY_TOKEN or REGISTRY_TOKEN_FILE, not both"):
        from_env(REGISTRY_TOKEN="cr_env", REGISTRY_TOKEN_FILE=str(path))


def test_the_worker_exits_2_naming_the_file(tmp_path: Path) -> None:
    """The real command: a refused file stops registry-worker before it imports torch."""
    path = token_file(tmp_path, "cr_secret\n", 0o644)
    env = {k: v for k, v in os.environ.items() if k != "REGISTRY_TOKEN"}
    done = subprocess.run(
        [str(BIN / "registry-worker"), "--once"],
        env={**env, "REGISTRY_TOKEN_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert f"REGISTRY_TOKEN_FILE={path} is open to group or others" in done.stderr
