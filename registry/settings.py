"""Settings: the only reader of ``os.environ`` in the project."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///var/registry.db"
DEFAULT_SERVER_URL = "http://127.0.0.1:5000"
DEFAULT_DATA_ROOT = "var/data"
#: Every session-signing key this project ever shipped as a default. They are public (anyone can
#: sign an admin session with them), so they are refused like an unset key.
SHIPPED_SECRET_KEYS = frozenset({"dev-insecure-change-me"})
MIN_SECRET_KEY_LENGTH = 32
KEY_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
#: The value of Strict-Transport-Security when REGISTRY_TLS=1 (one year; no subdomains, which
#: may serve other things over plain HTTP).
HSTS = "max-age=31536000"


def _read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env``-style file (KEY=VALUE lines, ``#`` comments) if it exists."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def secret_key_problem(key: str | None) -> str | None:
    """Why ``key`` must not sign sessions (unset, short, repetitive, a shipped default), or None."""
    fix = f"set it to a random string, e.g. $({KEY_COMMAND})"
    if not key or not key.strip():
        return f"REGISTRY_SECRET_KEY is not set; {fix}"
    if key.strip() in SHIPPED_SECRET_KEYS:
        return f"REGISTRY_SECRET_KEY is a default this project shipped, known to anyone; {fix}"
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return (
            f"REGISTRY_SECRET_KEY has {len(key)} characters, fewer than "
            f"{MIN_SECRET_KEY_LENGTH}; {fix}"
        )
    if len(set(key)) < 8:
        return f"REGISTRY_SECRET_KEY repeats too few characters to be secret; {fix}"
    return None


class WeakSecretKey(ValueError):
    """REGISTRY_SECRET_KEY is unset, short or public: anyone could forge a signed-in session."""


def checked_secret_key(key: str | None) -> str:
    """``key`` when it may sign sessions; WeakSecretKey (naming REGISTRY_SECRET_KEY) if not."""
    problem = secret_key_problem(key)
    if problem is not None or key is None:
        raise WeakSecretKey(problem)
    return key


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes")


def _count(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """The whole number in ``env[name]`` (``default`` when unset); ValueError naming it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}; got {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """The seconds (a number >= 0) in ``env[name]`` (``default`` when unset); ValueError naming
    it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0; got {raw!r}")
    return value


class TokenFileError(ValueError):
    """REGISTRY_TOKEN_FILE cannot be used: missing, unreadable, open to others, or not one token."""


def read_token_file(path: Path) -> str:
    """The token in ``path`` (one trailing newline dropped); TokenFileError naming
    REGISTRY_TOKEN_FILE when it is missing, empty, not one line, or open to group or others."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise TokenFileError(f"REGISTRY_TOKEN_FILE={path} is not a regular file")
        if mode & 0o077:
            raise TokenFileError(
                f"REGISTRY_TOKEN_FILE={path} is open to group or others "
                f"(mode {stat.S_IMODE(mode):04o}); refusing it: chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenFileError(f"REGISTRY_TOKEN_FILE={path} does not exist") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"REGISTRY_TOKEN_FILE={path} cannot be read: {exc}") from None
    token = text.removesuffix("\n").removesuffix("\r")
    if not token or token != token.strip() or any(c.isspace() for c in token):
        raise TokenFileError(f"REGISTRY_TOKEN_FILE={path} must hold one token and nothing else")
    return token


def _token(env: Mapping[str, str]) -> str | None:
    """REGISTRY_TOKEN, or the content of REGISTRY_TOKEN_FILE (never both)."""
    path = env.get("REGISTRY_TOKEN_FILE", "")
    if not path:
        return env.get("REGISTRY_TOKEN") or None
    if env.get("REGISTRY_TOKEN"):
        raise TokenFileError("set REGISTRY_TOKEN or REGISTRY_TOKEN_FILE, not both")
    return read_token_file(Path(path))


@dataclass(frozen=True)
class Settings:
    """Everything configurable about the service, the clients and the worker."""

    database_url: str = DEFAULT_DATABASE_URL
    mlflow_tracking_uri: str = "sqlite:///var/mlflow.db"
    mlflow_artifact_root: str = "var/mlartifacts"
    #: Signs sessions and CSRF tokens. No default: ``registry serve`` and ``create_app`` refuse
    #: to run without a strong one (see ``secret_key_problem``).
    secret_key: str | None = None
    lease_seconds: int = 60
    server_url: str = DEFAULT_SERVER_URL
    token: str | None = None
    max_body_bytes: int = 1024 * 1024
    #: Session cookies only over HTTPS; REGISTRY_INSECURE_COOKIES=1 allows plain-HTTP tests.
    secure_cookies: bool = True
    #: Base URL of the MLflow UI, for links from run pages (None: no links).
    mlflow_ui_url: str | None = None
    #: Worker: the folder ``file:`` datasets are read from (relative to the working directory).
    data_root: str = DEFAULT_DATA_ROOT
    #: REGISTRY_TLS=1: browsers reach the service over HTTPS (a TLS proxy in front); every
    #: response then carries Strict-Transport-Security and session cookies are Secure.
    tls: bool = False
    #: Sign-in throttling: failed sign-ins (web form) per account, and per client address, in
    #: one window; failed bearer tokens (API) per client address in the same window.
    signin_failures: int = 10
    signin_address_failures: int = 50
    bearer_failures: int = 100
    signin_window_seconds: int = 900
    #: How many reverse proxies in front append to X-Forwarded-For (0: use the peer address).
    trusted_proxies: int = 0
    #: Run quotas of each token or user below admin (registry.services.admission): runs queued
    #: or running at once, runs queued per minute, and the highest priority a submitter gives.
    max_queued_runs: int = 100
    runs_per_minute: int = 30
    max_priority_submitter: int = 10
    #: Seconds between two reaps in each ``registry serve`` process (0: none; apps built
    #: with create_app never start one themselves).
    reap_interval: float = 3.0
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Build settings from the environment, a ``.env`` file adding to it."""
        env: dict[str, str] = {}
        if env_file is not None:
            env.update(_read_env_file(Path(env_file)))
        env.update(os.environ if environ is None else environ)
        return cls(
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI", cls.mlflow_tracking_uri),
            mlflow_artifact_root=env.get("MLFLOW_ARTIFACT_ROOT", cls.mlflow_artifact_root),
            secret_key=env.get("REGISTRY_SECRET_KEY") or None,
            lease_seconds=int(env.get("REGISTRY_LEASE_SECONDS", "60")),
            server_url=env.get("REGISTRY_URL", DEFAULT_SERVER_URL),
            token=_token(env),
            secure_cookies=_flag(env, "REGISTRY_TLS")
            or not _flag(env, "REGISTRY_INSECURE_COOKIES"),
            mlflow_ui_url=env.get("MLFLOW_UI_URL") or None,
            data_root=env.get("REGISTRY_DATA_ROOT") or DEFAULT_DATA_ROOT,
            tls=_flag(env, "REGISTRY_TLS"),
            signin_failures=_count(env, "REGISTRY_SIGNIN_FAILURES", cls.signin_failures),
            signin_address_failures=_count(
                env, "REGISTRY_SIGNIN_ADDRESS_FAILURES", cls.signin_address_failures
            ),
            bearer_failures=_count(env, "REGISTRY_BEARER_FAILURES", cls.bearer_failures),
            signin_window_seconds=_count(
                env, "REGISTRY_SIGNIN_WINDOW_SECONDS", cls.signin_window_seconds
            ),
            trusted_proxies=_count(env, "REGISTRY_TRUSTED_PROXIES", 0, minimum=0),
            max_queued_runs=_count(env, "REGISTRY_MAX_QUEUED_RUNS", cls.max_queued_runs),
            runs_per_minute=_count(env, "REGISTRY_RUNS_PER_MINUTE", cls.runs_per_minute),
            max_priority_submitter=_count(
                env, "REGISTRY_MAX_PRIORITY_SUBMITTER", cls.max_priority_submitter, minimum=0
            ),
            reap_interval=_seconds(env, "REGISTRY_REAP_INTERVAL", cls.reap_interval),
        )

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (settings are frozen)."""
        return replace(self, **changes)  # type: ignore[arg-type]
