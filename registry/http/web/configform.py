"""The config form: one input per document field, grouped by section, built from the schema.

Pure (no Flask): the views hand it ``request.form`` as a mapping. Text from inputs becomes a
typed document here; values that cannot even be read as their type are errors on their field,
and everything else is left to :func:`registry.document.spec.validate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from registry.document import datasets, spec
from registry.document.fields import json_schema
from registry.document.spec_model import LATER_MODEL_FIELDS
from registry.http.web.derived import derived_values
from registry.http.web.formatting import value_text
from registry.services.text import text_problem

SECTION_TITLES = {
    "general": "General",
    "model": "Model",
    "architecture": "Architecture details",
    "training": "Training",
    "generation": "Generation",
    "multimodal": "Multimodal",
    "data": "Data",
    "resources": "Resources",
}


@dataclass(frozen=True)
class Suggestion:
    """One <option> of an input's <datalist>."""

    value: str
    label: str
    tasks: str  # space-separated, for app.js
    offered: bool


@dataclass(frozen=True)
class Field:
    """One input: its dotted path, type and the guide's help."""

    path: str
    kind: str  # int | float | bool | choice | text
    optional: bool
    choices: tuple[str, ...]
    description: str
    recommended: str | None
    default: Any
    minimum: float | None = None
    maximum: float | None = None

    @property
    def name(self) -> str:
        """The field's name within its section (``n_group`` of model.moe is ``moe.n_group``)."""
        return self.path.split(".", 1)[-1]

    @property
    def derivable(self) -> bool:
        """An architecture field whose null the form shows resolved (CONTRACT 5.6)."""
        return self.optional and self.path in LATER_MODEL_FIELDS

    def suggestions(self, values: Mapping[str, str]) -> tuple[Suggestion, ...]:
        """What the input offers in a <datalist>: for ``data.dataset``, every built-in
        dataset, enabled where it serves the form's task (all of them for an unknown task);
        app.js re-enables them when the task changes."""
        if self.path != "data.dataset":
            return ()
        task = values.get("task", "")
        known = bool(datasets.serving(task))
        return tuple(
            Suggestion(
                d.name,
                f"{', '.join(d.tasks)}: {d.description}",
                " ".join(d.tasks),
                task in d.tasks or not known,
            )
            for d in datasets.BUILTINS
        )

    @property
    def input_id(self) -> str:
        """An HTML id for the input (dots are legal but awkward in CSS selectors)."""
        return "f-" + self.path.replace(".", "-")


@dataclass
class Section:
    """A group of fields under one heading."""

    key: str
    title: str
    fields: list[Field] = field(default_factory=list)


def _kind(prop: dict[str, Any]) -> tuple[str, bool, tuple[str, ...]]:
    variants = prop.get("anyOf") or [prop]
    types = [v.get("type") for v in variants]
    optional = "null" in types
    enum = next((v["enum"] for v in variants if "enum" in v), None)
    if enum:
        return "choice", optional, tuple(str(e) for e in enum)
    main = next((t for t in types if t and t != "null"), "string")
    kinds = {"integer": "int", "number": "float", "boolean": "bool"}
    return kinds.get(main, "text"), optional, ()


def _field(path: str, prop: dict[str, Any]) -> Field:
    kind, optional, choices = _kind(prop)
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    return Field(
        path,
        kind,
        optional,
        choices,
        prop.get("description", ""),
        prop.get("x-recommended"),
        prop.get("default"),
        low,
        high,
    )


def _ref(prop: dict[str, Any]) -> str | None:
    """The name of the object a property holds (``$ref``, or one under ``anyOf``), if any."""
    refs = [v["$ref"] for v in [prop, *prop.get("anyOf", [])] if "$ref" in v]
    return refs[0].rsplit("/", 1)[-1] if refs else None


def _fields(schema: dict[str, Any], prefix: str, ref: str) -> list[Field]:
    """The inputs of an object of the schema; nested objects (model.moe) become their leaves."""
    out = []
    for name, prop in schema["$defs"][ref]["properties"].items():
        nested = _ref(prop)
        if nested:
            out += _fields(schema, f"{prefix}{name}.", nested)
        else:
            out.append(_field(prefix + name, prop))
    return out


@cache
def sections() -> tuple[Section, ...]:
    """Every section with its fields, in the document's order (task first, under General).

    The model's architecture fields (CONTRACT 5.6: grouped-query attention, tied embeddings,
    MoE, MLA) follow the model section as a group of their own, "Architecture details".
    """
    schema = json_schema()
    task = _field("task", schema["properties"]["task"])
    out = [Section("general", SECTION_TITLES["general"], [task])]
    for key in spec.SECTIONS:
        fields = _fields(schema, f"{key}.", str(_ref(schema["properties"][key])))
        plain = [f for f in fields if f.path not in LATER_MODEL_FIELDS]
        out.append(Section(key, SECTION_TITLES.get(key, key.title()), plain))
        if key == "model":
            details = [f for f in fields if f.path in LATER_MODEL_FIELDS]
            out.append(Section("architecture", SECTION_TITLES["architecture"], details))
    return tuple(out)


def all_fields() -> list[Field]:
    """Every field of the form."""
    return [f for s in sections() for f in s.fields]


def values_of(doc: Mapping[str, Any]) -> dict[str, str]:
    """The form's input values for a (normalised or partial) document."""
    flat = spec.flatten(dict(doc))
    out = {}
    for f in all_fields():
        value = flat.get(f.path, f.default)
        out[f.path] = "" if value is None else ("true" if value is True else value_text(value))
    return out


def parse_form(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The document the inputs spell, and the errors of inputs unreadable as their type."""
    doc: dict[str, Any] = {"schema_version": 1}
    errors: dict[str, str] = {}
    for f in all_fields():
        raw = (form.get(f.path) or "").strip()
        try:
            value = _read(f, raw)
        except ValueError as exc:
            errors[f.path] = str(exc)
            continue
        _put(doc, f.path, value)
    return doc, errors


def _read(f: Field, raw: str) -> Any:
    if f.kind == "bool":
        return raw in ("true", "on", "1", "yes")
    if raw == "" or (f.optional and raw.lower() in ("null", "none")):
        if f.optional:
            return None
        raise ValueError("enter a value")
    if f.kind in ("int", "float"):
        return _number(raw, whole=f.kind == "int")
    problem = text_problem(raw)  # the API refuses NUL in a body; so does the form
    if problem is not None:
        raise ValueError(problem)
    return raw


def _number(raw: str, whole: bool) -> int | float:
    """A number input; JSON has no NaN or infinity, so neither does a document."""
    what = "a whole number" if whole else "a number"
    try:
        number = float(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{raw!r} is not {what}") from None
    if not math.isfinite(number):
        raise ValueError(f"{raw!r} is not a finite number")
    if whole and not number.is_integer():
        raise ValueError(f"{raw!r} is not {what}")
    return int(number) if whole else number


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {})
    doc[leaf] = value


@dataclass
class Checked:
    """What checking a form produced: field errors, other errors, warnings and the estimate."""

    doc: dict[str, Any]
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    other_errors: list[str] = field(default_factory=list)
    field_warnings: dict[str, list[str]] = field(default_factory=dict)
    other_warnings: list[str] = field(default_factory=list)
    estimate: dict[str, Any] | None = None
    hash: str | None = None
    derived: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """No errors at all."""
        return not self.field_errors and not self.other_errors

    def to_dict(self) -> dict[str, Any]:
        """The JSON the page's script reads."""
        return {
            "valid": self.valid,
            "field_errors": self.field_errors,
            "other_errors": self.other_errors,
            "field_warnings": self.field_warnings,
            "other_warnings": self.other_warnings,
            "estimate": self.estimate,
            "hash": self.hash,
            "derived": self.derived,
        }


def check(doc: dict[str, Any], read_errors: Mapping[str, str] | None = None) -> Checked:
    """Validate ``doc``; each issue lands on its field when the form has one."""
    paths = {f.path for f in all_fields()}
    result = spec.validate(doc)
    checked = Checked(doc, estimate=result.estimate, hash=result.hash, derived=derived_values(doc))
    for path, message in (read_errors or {}).items():
        checked.field_errors.setdefault(path, []).append(message)
    for issue in result.errors:
        if issue.field in paths:
            if issue.field not in (read_errors or {}):
                checked.field_errors.setdefault(issue.field, []).append(issue.message)
        else:
            checked.other_errors.append(f"{issue.field}: {issue.message}")
    for issue in result.warnings:
        if issue.field in paths:
            checked.field_warnings.setdefault(issue.field, []).append(issue.message)
        else:
            checked.other_warnings.append(f"{issue.field}: {issue.message}")
    if read_errors:
        checked.estimate, checked.hash = None, None
    return checked
