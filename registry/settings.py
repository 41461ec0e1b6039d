"""Settings: the only reader of ``os.environ`` in the project."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///var/registry.db"
DEFAULT_SERVER_URL = "http://127.0.0.1:5000"


def _read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env``-style file (KEY=VALUE lines, ``#`` comments) if it exists."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _count(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """The whole number in ``env[name]`` (``default`` when unset); ValueError naming it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}; got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    """Everything configurable about the service, the clients and the worker."""

    database_url: str = DEFAULT_DATABASE_URL
    mlflow_tracking_uri: str = "sqlite:///var/mlflow.db"
    mlflow_artifact_root: str = "var/mlartifacts"
    secret_key: str = "dev-insecure-change-me"
    lease_seconds: int = 60
    server_url: str = DEFAULT_SERVER_URL
    token: str | None = None
    max_body_bytes: int = 1024 * 1024
    #: Session cookies only over HTTPS; REGISTRY_INSECURE_COOKIES=1 allows plain-HTTP tests.
    secure_cookies: bool = True
    #: Base URL of the MLflow UI, for links from run pages (None: no links).
    mlflow_ui_url: str | None = None
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
            secret_key=env.get("REGISTRY_SECRET_KEY", cls.secret_key),
            lease_seconds=int(env.get("REGISTRY_LEASE_SECONDS", "60")),
            server_url=env.get("REGISTRY_URL", DEFAULT_SERVER_URL),
            token=env.get("REGISTRY_TOKEN") or None,
            secure_cookies=env.get("REGISTRY_INSECURE_COOKIES", "").lower()
            not in ("1", "true", "yes"),
            mlflow_ui_url=env.get("MLFLOW_UI_URL") or None,
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
        )

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (settings are frozen)."""
        return replace(self, **changes)  # type: ignore[arg-type]
