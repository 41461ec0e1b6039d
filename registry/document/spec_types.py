"""The building blocks of the document's schema: strict field types, help text, sections."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

#: The ``x-added`` note of the fields added in December 2026 (CONTRACT 5.4 and 5.6).
ADDED_DECEMBER_2026 = "config-registry 0.1.0, December 2026 (CONTRACT 5.4)"


def _integral(value: Any) -> Any:
    # 12.0 is a whole number; 12.5, "12" and true are not (the strict core rejects them).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int = Annotated[int, BeforeValidator(_integral), Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


def spec_field(
    default: Any, description: str, recommended: str | None = None, **schema: Any
) -> Any:
    """A field with its guide-derived help text and JSON-Schema bounds (checked by the rules)."""
    extra = dict(schema)
    if recommended:
        extra["x-recommended"] = recommended
    return Field(default=default, description=description, json_schema_extra=extra or None)


class Section(BaseModel):
    """A section (or nested object) of the document: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=False)
