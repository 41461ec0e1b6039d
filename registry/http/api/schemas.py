"""Request and response bodies of the JSON API as pydantic models (also the OpenAPI schemas)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from registry.errors import InvalidInput
from registry.services.configs import NAME_PATTERN

M = TypeVar("M", bound=BaseModel)

#: A config document, or a string holding one as YAML or JSON text.
DocumentField = Annotated[
    Any,
    Field(
        description="the config document, or a string of YAML/JSON text holding it",
        json_schema_extra={"anyOf": [{"type": "object"}, {"type": "string"}]},
    ),
]


class Body(BaseModel):
    """A request body: unknown fields and wrong types are errors, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ValidateRequest(Body):
    """``POST /validate``."""

    config: DocumentField

    @field_validator("config")
    @classmethod
    def _document_or_text(cls, value: Any) -> Any:
        if not isinstance(value, dict | str):
            raise ValueError("config must be an object or a string of YAML/JSON text")
        return value


class CreateConfigRequest(ValidateRequest):
    """``POST /configs``."""

    name: str = Field(pattern=f"^{NAME_PATTERN}$", max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    message: str | None = Field(default=None, max_length=10_000)


class AddVersionRequest(ValidateRequest):
    """``POST /configs/<name>/versions``."""

    message: str | None = Field(default=None, max_length=10_000)
    parent_version: int | None = Field(default=None, ge=1, le=2**31 - 1)


def parse_body(model: type[M], data: dict[str, Any]) -> M:
    """``data`` as ``model``; InvalidInput naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        raise InvalidInput(errors) from None


class Answer(BaseModel):
    """A response body."""

    model_config = ConfigDict(populate_by_name=True)


class Issue(Answer):
    """One validation error or warning, named by the field's dotted path."""

    field: str
    message: str


class Error(Answer):
    """Every error answer: a message, a code, and for some the fields or the position."""

    error: str
    code: str
    errors: list[Issue] | None = None
    line: int | None = None
    column: int | None = None


class Health(Answer):
    """``GET /health``."""

    status: str


class PresetSummary(Answer):
    """One preset in the list."""

    name: str
    description: str
    section: str


class PresetList(Answer):
    """``GET /presets``."""

    presets: list[PresetSummary]


class ValidationAnswer(Answer):
    """``POST /validate``: 200 whether or not the document is valid."""

    valid: bool
    errors: list[Issue]
    warnings: list[Issue]
    normalized: dict[str, Any] | None
    hash: str | None
    estimate: dict[str, Any] | None


class VersionCreated(Answer):
    """``POST /configs`` and ``POST /configs/<name>/versions``."""

    name: str
    version: int
    hash: str
    warnings: list[Issue]
    created: bool
    parent_version: int | None = None


class ConfigItem(Answer):
    """One config in the list."""

    name: str
    description: str | None
    created_by: str | None
    created_at: dt.datetime
    latest_version: int | None
    latest_hash: str | None
    version_count: int


class ConfigList(Answer):
    """``GET /configs``."""

    configs: list[ConfigItem]


class VersionSummary(Answer):
    """One version in a config's history."""

    version: int
    hash: str
    message: str | None
    created_by: str | None
    created_at: dt.datetime
    parent_version: int | None


class ConfigDetail(Answer):
    """``GET /configs/<name>``."""

    name: str
    description: str | None
    created_by: str | None
    created_at: dt.datetime
    latest_version: int | None
    versions: list[VersionSummary]


class VersionDetail(VersionSummary):
    """``GET /configs/<name>/versions/<v>``."""

    name: str
    config: dict[str, Any]
    warnings: list[Issue]


class Change(Answer):
    """One changed field."""

    field: str
    from_: Any = Field(alias="from")
    to: Any


class DiffAnswer(Answer):
    """``GET /configs/<name>/diff``."""

    name: str
    from_: int = Field(alias="from")
    to: int
    changes: list[Change]


#: Every model the OpenAPI document names as a component.
COMPONENTS: tuple[type[BaseModel], ...] = (
    ValidateRequest,
    CreateConfigRequest,
    AddVersionRequest,
    Error,
    Health,
    PresetList,
    ValidationAnswer,
    VersionCreated,
    ConfigList,
    ConfigDetail,
    VersionDetail,
    DiffAnswer,
)


def dump(model: BaseModel) -> dict[str, Any]:
    """A response model as JSON-ready data, with its aliases (``from``)."""
    return model.model_dump(mode="json", by_alias=True)
