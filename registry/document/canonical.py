"""The normalised document as data: canonical JSON, its hash, dotted paths, diffs, dumps."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import yaml


def canonical_json(doc: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the text the hash is taken of."""
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def config_hash(doc: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of a normalised document."""
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted path: ``{"training.learning_rate": 3e-05, ...}``."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def diff(a: dict[str, Any], b: dict[str, Any], all_fields: bool = False) -> list[dict[str, Any]]:
    """``[{"field", "from", "to"}]`` by dotted path, sorted; only changes unless all_fields."""
    fa, fb = flatten(a), flatten(b)
    rows = []
    for path in sorted(fa.keys() | fb.keys()):
        before, after = fa.get(path), fb.get(path)
        if all_fields or before != after or type(before) is not type(after):
            rows.append({"field": path, "from": before, "to": after})
    return rows


def dump(doc: dict[str, Any], fmt: Literal["yaml", "json"] = "yaml") -> str:
    """The document as readable YAML (section order kept) or indented JSON."""
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt != "yaml":
        raise ValueError(f"unknown format {fmt!r}; use 'yaml' or 'json'")
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
