"""Values that arrive as text (URL parts, query strings, form fields), read one strict way.

Python's ``int()`` and ``str.isdigit()`` accept far more than a person types: ``"²"`` passes
``isdigit()`` and then fails ``int()``; Arabic-Indic digits, ``" 12 "`` and ``"1_2"`` all
become 12; and nothing stops ``2**70``, which SQLite cannot bind and PostgreSQL refuses for
its columns. Here an integer is ASCII digits (with a ``-`` where negatives make sense) inside
the bounds of the column it is looked up in, or the request is refused naming the parameter.
Ids and version numbers are INTEGER columns, 32-bit on PostgreSQL: :data:`ID_MAX`.

:data:`FreeText` is the API's side of the one free-text check (:mod:`registry.services.text`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field
from werkzeug.routing import BaseConverter, IntegerConverter, Map, ValidationError

from registry.errors import BadRequest
from registry.services.text import MAX_TEXT, text_problem

__all__ = [
    "ID_MAX",
    "INT64_MAX",
    "FreeText",
    "IdConverter",
    "VersionRefConverter",
    "ascii_digits",
    "whole_number",
]

#: The largest id or version number a database here can hold (PostgreSQL's INTEGER).
ID_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_NUMBER = re.compile(r"-?[0-9]{1,19}")


class IdConverter(IntegerConverter):
    """``<int:x>`` and ``<id:x>`` in routes: ASCII digits from 1 to :data:`ID_MAX`, else a 404.

    create_app installs it under both names, so every ``<int:...>`` route (run ids, version
    numbers, and routes added later) is bounded without each view checking.
    """

    regex = r"[0-9]+"
    signed_regex = r"-?[0-9]+"

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = 1,
        max: int | None = ID_MAX,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)

    def to_python(self, value: str) -> Any:
        """The number, or ValidationError (a 404) when it has too many digits to be one."""
        if len(value.lstrip("-")) > 19:  # not worth reading as a number
            raise ValidationError()
        return super().to_python(value)


class VersionRefConverter(BaseConverter):
    """``<version:ref>``: a version number or ``latest``, handed to the view as its text. A
    number outside 1..:data:`ID_MAX` is a 404 here; other text is the view's to refuse (422,
    naming the version), as it always was."""

    openapi_schema: ClassVar[dict[str, Any]] = {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": ID_MAX},
            {"type": "string", "enum": ["latest"]},
        ]
    }

    def to_python(self, value: str) -> str:
        """``value``; ValidationError (a 404) for a number no version can have."""
        if ascii_digits(value) and (len(value) > 10 or not 1 <= int(value) <= ID_MAX):
            raise ValidationError()
        return value


def ascii_digits(raw: str | None) -> bool:
    """Whether ``raw`` is one or more of the ASCII digits 0-9 (``"²"`` is not)."""
    return raw is not None and raw.isascii() and raw.isdigit()


def whole_number(raw: str | None, name: str, *, low: int = 1, high: int = ID_MAX) -> int | None:
    """``raw`` as an int in ``low..high``; None when absent or blank; BadRequest naming ``name``.

    Surrounding spaces are forgiven (a pasted value); anything else that is not ASCII digits is
    refused rather than guessed at.
    """
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if not _NUMBER.fullmatch(text) or (text.startswith("-") and low >= 0):
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise BadRequest(
            f"{name} must be a whole number written with the digits 0-9; got {shown!r}",
            field=name,
        )
    value = int(text)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}; got {value}", field=name)
    return value


def _free_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: A description or message in a request body: the web form's check (services.text), as a
#: pydantic type, so that the API refuses (422, naming the field) what the form refuses.
FreeText = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_free_text)]
