"""The new-config / new-version form's request handling: where it starts, what was typed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import g
from werkzeug.datastructures import FileStorage

from registry.document import parse, presets, spec
from registry.errors import BadRequest, RegistryError
from registry.http.web import configform
from registry.services import configs
from registry.services.text import text_problem

MAX_YAML_BYTES = 256 * 1024
#: The inputs beside the document: the config's name, its description, the version message.
TEXT_INPUTS = ("name", "description", "message")


@dataclass
class Start:
    """A choice in the "start from" list."""

    value: str  # preset:NAME or config:NAME@VERSION
    label: str


def start_choices(name: str | None) -> list[Start]:
    """Presets, then the versions of ``name`` (newest first) or the latest of every config."""
    out = [Start(f"preset:{p.name}", f"preset {p.name}") for p in presets.list_presets()]
    if name is not None:
        config = configs.get_config(g.db, name)
        out += [
            Start(f"config:{name}@{v.version}", f"{name} v{v.version}: {v.message or ''}".strip())
            for v in reversed(config.versions)
        ]
    else:
        out += [
            Start(
                f"config:{row.config.name}@{row.latest_version}",
                f"{row.config.name} v{row.latest_version} (latest)",
            )
            for row in configs.list_configs(g.db)
            if row.latest_version
        ]
    return out


def start_document(choice: str | None, fallback: dict[str, Any] | None) -> dict[str, Any]:
    """The document a "start from" choice names; ``fallback`` (or tiny-cpu) when none."""
    if choice and choice.startswith("preset:"):
        return dict(presets.get_preset(choice.removeprefix("preset:")).document)
    if choice and choice.startswith("config:"):
        name, _, version = choice.removeprefix("config:").rpartition("@")
        return dict(configs.resolve_version(g.db, name, version or None).document)
    return fallback if fallback is not None else dict(presets.get_preset("tiny-cpu").document)


def typed_document(
    form: Mapping[str, str], upload: FileStorage | None
) -> tuple[dict[str, Any], dict[str, str], str | None]:
    """The document the request holds: pasted or uploaded YAML/JSON if any, else the inputs.

    Returns (document, field read errors, a YAML parse error or None).
    """
    text = (form.get("yaml") or "").strip()
    if upload is not None and upload.filename:
        data = upload.read(MAX_YAML_BYTES + 1)
        if len(data) > MAX_YAML_BYTES:
            return {}, {}, f"the file is larger than {MAX_YAML_BYTES // 1024} KiB"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return {}, {}, "the file is not UTF-8 text"
    if text:
        try:
            parsed = spec.parse_document(text)
            parse.check_text(parsed)  # what the API refuses in a body: NUL, lone surrogates
        except BadRequest as err:
            return {}, {}, err.message
        if not isinstance(parsed, dict):
            return {}, {}, "the YAML must be a mapping of sections (model:, training:, ...)"
        return parsed, {}, None
    doc, errors = configform.parse_form(form)
    return doc, errors, None


def checked_from_request(
    form: Mapping[str, str], upload: FileStorage | None
) -> tuple[configform.Checked, str | None]:
    """Validate what the request holds; the YAML error when the pasted text is unreadable."""
    doc, read_errors, yaml_error = typed_document(form, upload)
    if yaml_error:
        return configform.Checked(doc, other_errors=[yaml_error]), yaml_error
    return configform.check(doc, read_errors), None


def text_inputs(form: Mapping[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The name, description and message inputs, and the errors, by input, of those the API
    would refuse too (services.text: length, NUL and control characters)."""
    fields = {key: form.get(key, "") for key in TEXT_INPUTS}
    errors = {
        key: [problem]
        for key in ("description", "message")
        if (problem := text_problem(fields[key].strip())) is not None
    }
    return fields, errors


def issue_map(err: RegistryError) -> dict[str, list[str]]:
    """The ``errors`` of a RegistryError by field."""
    out: dict[str, list[str]] = {}
    for issue in err.extra.get("errors") or []:
        out.setdefault(str(issue.get("field", "")), []).append(str(issue.get("message", "")))
    return out
