"""The HTTP client of the registry API, shared by the CLI and the worker.

Answers of 400 and above raise the typed errors of ``registry.errors`` with the server's
message; connection errors and 5xx answers are retried with backoff for idempotent calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from registry import errors
from registry.settings import Settings

log = logging.getLogger(__name__)

API = "/api/v1"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

#: Errors by the ``code`` the server sends, then by HTTP status.
_BY_CODE: dict[str, type[errors.RegistryError]] = {
    "parse_error": errors.DocumentParseError,
    "filter_error": errors.FilterParseError,
    "stale_lease": errors.StaleLease,
    "invalid": errors.InvalidConfig,
    "invalid_request": errors.InvalidInput,
}
_BY_STATUS: dict[int, type[errors.RegistryError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.BadRequest,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
}


def error_for(status: int, body: Any) -> errors.RegistryError:
    """The typed error for an HTTP answer ``status`` with JSON ``body`` (or its text)."""
    data = body if isinstance(body, dict) else {"error": str(body or "")[:500]}
    message = str(data.get("error") or f"HTTP {status}")
    extra = {k: v for k, v in data.items() if k not in ("error", "code")}
    cls = _BY_CODE.get(str(data.get("code")), _BY_STATUS.get(status, errors.RegistryError))
    if issubclass(cls, errors.InvalidInput):
        issues = extra.pop("errors", None)
        err: errors.RegistryError = cls(
            issues if isinstance(issues, list) else [], message, **extra
        )
    else:
        err = cls(message, **extra)
    err.status = status  # keep the server's status, e.g. 500 or 503
    return err


class Client:
    """A client of one registry server, authenticated with one bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "config-registry-client/1"
        if token:
            token = token.strip()
            if not token or any(c.isspace() for c in token):
                raise errors.BadRequest(
                    "the token holds whitespace or several lines; set REGISTRY_TOKEN to the "
                    "token alone",
                    field="token",
                )
            self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Client:
        """A client for ``settings.server_url`` with ``settings.token``."""
        return cls(settings.server_url, settings.token, **kwargs)

    def close(self) -> None:
        """Close the underlying connections."""
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the one place requests are made -------------------------------------------------

    def raw(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        retry: bool | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request; the response if < 400, else the typed error.

        ``retry`` (default: for idempotent methods) retries connection errors and 5xx
        answers with exponential backoff.
        """
        method = method.upper()
        retry = method in IDEMPOTENT if retry is None else retry
        attempts = 1 + (self.retries if retry else 0)
        url = self.base_url + path
        for attempt in range(1, attempts + 1):
            try:
                response = self.session.request(
                    method, url, json=json, params=params, timeout=self.timeout, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == attempts:
                    raise errors.Unavailable(
                        f"cannot reach the registry at {self.base_url}: {exc.__class__.__name__}"
                    ) from exc
                self._wait(attempt, f"{method} {path}: {exc.__class__.__name__}")
                continue
            if response.status_code >= 500 and attempt < attempts:
                self._wait(attempt, f"{method} {path}: HTTP {response.status_code}")
                continue
            if response.status_code >= 400:
                raise error_for(response.status_code, _json_or_text(response))
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, method: str, path: str, *, json: Any = None, **kwargs: Any) -> Any:
        """Send a request and return the decoded JSON answer (None for 204 or no body)."""
        response = self.raw(method, path, json=json, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _wait(self, attempt: int, why: str) -> None:
        delay = self.backoff * 2 ** (attempt - 1)
        log.warning("%s; retrying in %.1fs", why, delay)
        self._sleep(delay)

    # -- the API -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return self.request("GET", f"{API}/health")  # type: ignore[no-any-return]

    def validate(self, config: Any) -> dict[str, Any]:
        """``POST /validate``: errors, warnings, normalised document, hash, estimate."""
        return self.request(  # type: ignore[no-any-return]
            "POST", f"{API}/validate", json={"config": config}, retry=True
        )

    def create_config(
        self,
        name: str,
        config: Any,
        *,
        description: str | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """``POST /configs``: version 1 of a new config; Conflict if the name exists."""
        body = _without_none(name=name, config=config, description=description, message=message)
        return self.request("POST", f"{API}/configs", json=body)  # type: ignore[no-any-return]

    def add_version(
        self,
        name: str,
        config: Any,
        *,
        message: str | None = None,
        parent_version: int | None = None,
    ) -> dict[str, Any]:
        """``POST /configs/<name>/versions``; ``created`` is False when already stored."""
        body = _without_none(config=config, message=message, parent_version=parent_version)
        # Safe to retry: a document stored by a lost answer dedupes by its hash.
        return self.request(  # type: ignore[no-any-return]
            "POST", f"{API}/configs/{_seg(name)}/versions", json=body, retry=True
        )

    def submit(self, name: str, config: Any, *, message: str | None = None) -> dict[str, Any]:
        """Create ``name`` with ``config``, or add it as a version when ``name`` exists."""
        try:
            return self.create_config(name, config, message=message)
        except errors.Conflict:
            return self.add_version(name, config, message=message)

    def list_configs(self) -> list[dict[str, Any]]:
        """``GET /configs``."""
        return self.request("GET", f"{API}/configs")["configs"]  # type: ignore[no-any-return]

    def get_config(self, name: str) -> dict[str, Any]:
        """``GET /configs/<name>``: the config with its versions."""
        return self.request("GET", f"{API}/configs/{_seg(name)}")  # type: ignore[no-any-return]

    def get_version(self, name: str, version: int | str = "latest") -> dict[str, Any]:
        """``GET /configs/<name>/versions/<v>`` (``"latest"`` for the newest)."""
        return self.request(  # type: ignore[no-any-return]
            "GET", f"{API}/configs/{_seg(name)}/versions/{_seg(str(version))}"
        )

    def export(self, name: str, version: int | str = "latest", fmt: str = "yaml") -> str:
        """A version's document as YAML or JSON text."""
        response = self.raw(
            "GET",
            f"{API}/configs/{_seg(name)}/versions/{_seg(str(version))}",
            params={"format": fmt},
        )
        response.encoding = "utf-8"
        return response.text

    def diff(
        self,
        name: str,
        old: int | str | None = None,
        new: int | str | None = None,
        *,
        all_fields: bool = False,
    ) -> dict[str, Any]:
        """``GET /configs/<name>/diff``: ``{"from", "to", "changes"}``."""
        params = _without_none(**{"from": old, "to": new, "all": "1" if all_fields else None})
        return self.request(  # type: ignore[no-any-return]
            "GET", f"{API}/configs/{_seg(name)}/diff", params=params
        )


def _seg(value: str) -> str:
    return quote(value, safe="")


def _without_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
