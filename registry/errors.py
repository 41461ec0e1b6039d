"""One hierarchy of named errors; the API maps each to HTTP in one handler."""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Something went wrong in the registry."""

    status = 500
    code = "internal"

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.extra = extra
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The JSON error shape: ``{"error": message, "code": code, ...extra}``."""
        return {"error": self.message, "code": self.code, **self.extra}


class BadRequest(RegistryError):
    """The request could not be understood."""

    status = 400
    code = "bad_request"


class DocumentParseError(BadRequest):
    """The document is not well-formed YAML or JSON."""

    code = "parse_error"


class FilterParseError(BadRequest):
    """The filter expression is not valid."""

    code = "filter_error"


class Unauthorized(RegistryError):
    """A valid bearer token is required."""

    status = 401
    code = "unauthorized"


class Forbidden(RegistryError):
    """Your token's role may not do this."""

    status = 403
    code = "forbidden"


class NotFound(RegistryError):
    """No such object."""

    status = 404
    code = "not_found"


class Conflict(RegistryError):
    """The request conflicts with the stored state."""

    status = 409
    code = "conflict"


class DuplicateRun(Conflict):
    """This config hash, seed and code version already succeeded; pass force to run it again."""

    code = "duplicate_run"


class StaleLease(Conflict):
    """The lease is no longer current: the run was re-claimed, cancelled or finished."""

    code = "stale_lease"


class MlflowRunMismatch(Conflict):
    """This attempt already reported another MLflow run; an attempt logs to one."""

    code = "mlflow_run_mismatch"


class PayloadTooLarge(RegistryError):
    """The request body is larger than 1 MiB."""

    status = 413
    code = "payload_too_large"


class TooManyRequests(RegistryError):
    """Too many requests; wait ``retry_after`` seconds (every answer carries ``Retry-After``)."""

    status = 429
    code = "too_many_requests"

    def __init__(self, message: str | None = None, *, retry_after: int, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class InvalidInput(RegistryError):
    """Some fields of the request are invalid."""

    status = 422
    code = "invalid_request"
    what = "request"

    def __init__(self, errors: list[dict[str, str]], message: str | None = None, **extra: Any):
        fields = ", ".join(e["field"] for e in errors[:5])
        super().__init__(message or f"invalid {self.what}: {fields}", errors=errors, **extra)


class InvalidConfig(InvalidInput):
    """The config document is invalid."""

    code = "invalid"
    what = "config"


class Unavailable(RegistryError):
    """The registry server could not be reached or kept failing; try again later."""

    status = 503
    code = "unavailable"


class DatabaseUnavailable(Unavailable):
    """The database is unavailable (restarting, unreachable or busy); retry in a few seconds."""

    code = "database_unavailable"

    def __init__(self, message: str | None = None, *, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)
        self.retry_after = retry_after
