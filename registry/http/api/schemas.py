"""Request and response bodies of the JSON API as pydantic models (also the OpenAPI schemas).

A view names the models it reads with :func:`accepts`; the decorator parses the body and the
query string with them and hands the view the parsed objects, and ``registry.http.api.openapi``
reads the same models off the view, so what is documented is what is parsed.
Run and worker models live in ``registry.http.api.run_schemas``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from flask import request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from werkzeug.datastructures import MultiDict

from registry.errors import BadRequest, InvalidInput
from registry.http.api.body import json_body
from registry.http.params import FreeText, ascii_digits
from registry.services.configs import NAME_PATTERN

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

#: Where the OpenAPI document keeps its schemas; the config document's is ``ConfigDocument``
#: (the JSON Schema that ``GET /schema`` answers).
REF = "#/components/schemas/{model}"
DOCUMENT_REF = REF.format(model="ConfigDocument")

#: A normalised config document, as answers carry it (``allOf``: pydantic would resolve a
#: bare ``$ref`` itself).
Document = Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": DOCUMENT_REF}]})]

#: A config document, or a string holding one as YAML or JSON text.
DocumentField = Annotated[
    Any,
    Field(
        description="the config document (its JSON Schema: GET /schema), or a string of "
        "YAML/JSON text holding it; an invalid one is answered with the fields that are wrong",
        json_schema_extra={"anyOf": [{"$ref": DOCUMENT_REF}, {"type": "string"}]},
    ),
]


class Body(BaseModel):
    """A request body: unknown fields and wrong types are errors, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """Query-string parameters: text read as each field's type; unknown names are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    #: The status of an invalid parameter (422 where a route has always answered that).
    invalid_status: ClassVar[int] = 400

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """No NUL: no database stores one, and PostgreSQL refuses to compare with one."""
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("may not contain NUL (\\u0000)")
        return value


Q = TypeVar("Q", bound=Query)


def _whole_number(value: Any) -> Any:
    if isinstance(value, str) and not ascii_digits(value):
        raise ValueError(f"a whole number is ASCII digits; got {value!r}")
    return value


#: An integer query parameter: ASCII digits only (no sign, spaces, ``_`` or ``5.0``).
QueryInt = Annotated[int, BeforeValidator(_whole_number)]


def _issues(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
        for e in exc.errors(include_url=False)
    ]


def parse_body(model: type[M], data: dict[str, Any]) -> M:
    """``data`` as ``model``; InvalidInput naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(_issues(exc)) from None


@cache
def _list_fields(model: type[Query]) -> frozenset[str]:
    """The parameters of ``model`` that take every value of a repeated name."""
    properties = model.model_json_schema(mode="validation")["properties"]
    return frozenset(name for name, prop in properties.items() if prop.get("type") == "array")


def parse_query(model: type[Q], args: MultiDict[str, str]) -> Q:
    """The query string as ``model``: the first value of a repeated name, or all of them for a
    list field; 400 (or the model's ``invalid_status``) naming the field."""
    lists = _list_fields(model)
    data: dict[str, Any] = {k: args.getlist(k) if k in lists else args[k] for k in args}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = _issues(exc)
        if model.invalid_status == 422:
            raise InvalidInput(errors) from None
        first = errors[0]
        message = f"bad parameter {first['field']}: {first['message']}"
        raise BadRequest(message, field=first["field"], errors=errors) from None


def accepts(
    *, body: type[Body] | None = None, params: type[Query] | None = None
) -> Callable[[F], F]:
    """Parse the request body (JSON or YAML) with ``body`` and the query string with ``params``;
    the view gets them as ``body=`` and ``params=``. Put it below ``@requires``, so that the
    caller is checked first."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if params is not None:
                kwargs["params"] = parse_query(params, request.args)
            if body is not None:
                kwargs["body"] = parse_body(body, json_body())
            return view(*args, **kwargs)

        wrapper.body_model = body  # type: ignore[attr-defined]
        wrapper.params_model = params  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


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
    description: FreeText | None = None
    message: FreeText | None = None


class AddVersionRequest(ValidateRequest):
    """``POST /configs/<name>/versions``."""

    message: FreeText | None = None
    parent_version: int | None = Field(default=None, ge=1, le=2**31 - 1)


class VersionQuery(Query):
    """``GET /configs/<name>/versions/<ref>``."""

    invalid_status: ClassVar[int] = 422

    format: Literal["yaml", "json"] | None = Field(
        default=None, description="answer the bare document as YAML (text/yaml) or JSON"
    )


#: A version as a query parameter: its number or ``latest``.
VERSION_REF = "^([0-9]{1,10}|latest)$"


class DiffQuery(Query):
    """``GET /configs/<name>/diff``."""

    invalid_status: ClassVar[int] = 422  # as for a bad version in the path

    from_: str | None = Field(
        default=None, pattern=VERSION_REF, alias="from", description="a version (default: to - 1)"
    )
    to: str | None = Field(
        default=None, pattern=VERSION_REF, description="a version (default: latest)"
    )
    all: bool = Field(default=False, description="true lists every field, changed or not")


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
    field: str | None = None
    line: int | None = None
    column: int | None = None
    position: int | None = None
    retry_after: int | None = None


class Health(Answer):
    """``GET /health``."""

    status: Literal["ok"]


class PresetSummary(Answer):
    """One preset in the list."""

    name: str
    description: str
    section: str


class PresetList(Answer):
    """``GET /presets``."""

    presets: list[PresetSummary]


class DatasetSummary(Answer):
    """One built-in dataset: its name, the tasks it serves and what it holds."""

    name: str
    tasks: list[str]
    description: str


class DatasetList(Answer):
    """``GET /datasets``: the built-in datasets (CONTRACT 5.4)."""

    datasets: list[DatasetSummary]


class ValidationAnswer(Answer):
    """``POST /validate``: 200 whether or not the document is valid."""

    valid: bool
    errors: list[Issue]
    warnings: list[Issue]
    normalized: Document | None
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
    config: Document
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


#: status -> (the answer's model or JSON Schema, or one per content type; None for the error
#: shape), and what the answer means.
Answers = dict[int, tuple[type[BaseModel] | dict[str, Any] | None, str]]

#: Config and meta answers the routes' docstrings cannot say (the docstrings say the rest).
ANSWERS: dict[str, Answers] = {
    "api.get_version": {
        200: (
            {
                "application/json": {
                    "anyOf": [{"$ref": REF.format(model="VersionDetail")}, {"$ref": DOCUMENT_REF}]
                },
                "text/yaml": {"$ref": DOCUMENT_REF},
            },
            "the version; with ?format=json its bare document, with ?format=yaml that as YAML",
        )
    },
    "api.get_preset": {200: ({"$ref": DOCUMENT_REF}, "the preset's full, normalised document")},
}


def dump(model: BaseModel) -> dict[str, Any]:
    """A response model as JSON-ready data, with its aliases (``from``)."""
    return model.model_dump(mode="json", by_alias=True)
