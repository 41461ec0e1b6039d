"""Service and document routes: health, presets, datasets, validate, schema, OpenAPI."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify

from registry.document import datasets, fields, presets, spec
from registry.http.api.blueprint import bp
from registry.http.api.body import document_of
from registry.http.api.guard import requires
from registry.http.api.openapi import openapi_document
from registry.http.api.schemas import (
    DatasetList,
    DatasetSummary,
    Health,
    PresetList,
    PresetSummary,
    ValidateRequest,
    accepts,
    dump,
)


@bp.get("/health")
def health() -> Any:
    """Liveness; needs no token.
    ---
    get:
      summary: Health check
      security: []
      responses:
        200:
          description: the service is up
          content: {application/json: {schema: Health}}
    """
    return jsonify(dump(Health(status="ok")))


@bp.get("/presets")
@requires("read")
def list_presets() -> Any:
    """The scenario presets from the parameter guide.
    ---
    get:
      summary: List presets
      responses:
        200:
          description: every preset, without its document
          content: {application/json: {schema: PresetList}}
    """
    items = [
        PresetSummary(name=p.name, description=p.description, section=p.section)
        for p in presets.list_presets()
    ]
    return jsonify(dump(PresetList(presets=items)))


@bp.get("/presets/<name>")
@requires("read")
def get_preset(name: str) -> Any:
    """One preset's full config document (its description is in ``GET /presets``).
    ---
    get:
      summary: Read a preset's config document
      responses:
        404:
          description: no such preset
          content: {application/json: {schema: Error}}
    """
    return jsonify(presets.get_preset(name).document)


@bp.get("/datasets")
@requires("catalog")
def list_datasets() -> Any:
    """The built-in datasets and the tasks each serves (a ``file:`` dataset is not listed).
    ---
    get:
      summary: List built-in datasets
      responses:
        200:
          description: every built-in dataset, with the tasks it serves
          content: {application/json: {schema: DatasetList}}
    """
    items = [
        DatasetSummary(name=d.name, tasks=list(d.tasks), description=d.description)
        for d in datasets.BUILTINS
    ]
    return jsonify(dump(DatasetList(datasets=items)))


@bp.post("/validate")
@requires("read")
@accepts(body=ValidateRequest)
def validate(body: ValidateRequest) -> Any:
    """Validate a document without storing it; an invalid one is still a 200.
    ---
    post:
      summary: Validate a config document
      responses:
        200:
          description: errors, warnings, the normalised document, its hash and the estimate
          content: {application/json: {schema: ValidationAnswer}}
    """
    return jsonify(spec.validate(document_of(body.config)).to_dict())


@bp.get("/schema")
@requires("read")
def schema() -> Any:
    """The JSON Schema of the config document.
    ---
    get:
      summary: Config document JSON Schema
      responses:
        200:
          description: a JSON Schema
          content: {application/json: {schema: {type: object}}}
    """
    return jsonify(fields.json_schema())


@bp.get("/openapi.json")
@requires("read")
def openapi() -> Any:
    """This API described as OpenAPI 3.1, generated from the routes.
    ---
    get:
      summary: OpenAPI document
      responses:
        200:
          description: an OpenAPI 3.1 document
          content: {application/json: {schema: {type: object}}}
    """
    return jsonify(openapi_document(current_app))
