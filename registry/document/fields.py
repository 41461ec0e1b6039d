"""What the schema says about its fields: JSON Schema, per-field help, the dotted paths."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from registry.document.spec import SECTION_MODELS, SECTIONS, Document
from registry.document.spec_model import NESTED


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the document, for editors and the web form."""
    schema = Document.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://config-registry.invalid/schema/config-document-v1.json",
        "title": "config-registry document, schema_version 1",
        **schema,
    }


def field_help() -> dict[str, dict[str, Any]]:
    """Per dotted leaf path (``model.moe.n_group`` too): description, recommended, default."""
    out: dict[str, dict[str, Any]] = {}
    models: list[tuple[str, type[BaseModel]]] = [("", Document)]
    models += [(f"{name}.", model) for name, model in SECTION_MODELS.items()]
    models += [(f"model.{name}.", model) for name, model in NESTED.items()]
    for prefix, model in models:
        for name, info in model.model_fields.items():
            if (prefix == "" and name in SECTIONS) or (prefix == "model." and name in NESTED):
                continue  # an object, described by its own fields
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            out[prefix + name] = {
                "description": info.description or "",
                "recommended": extra.get("x-recommended"),
                "default": info.default,
            }
    return out


@lru_cache(maxsize=1)
def param_paths() -> frozenset[str]:
    """Every leaf of a normalised document by dotted path: the filter language's ``params.``."""
    return frozenset(field_help())
