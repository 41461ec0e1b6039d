"""Config routes: create, add versions, list, read, export, diff."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

from registry.document import spec
from registry.http.api.blueprint import bp
from registry.http.api.body import current_user, document_of
from registry.http.api.guard import requires
from registry.http.api.schemas import (
    AddVersionRequest,
    ConfigDetail,
    ConfigItem,
    ConfigList,
    CreateConfigRequest,
    DiffAnswer,
    DiffQuery,
    VersionCreated,
    VersionDetail,
    VersionQuery,
    VersionSummary,
    accepts,
    dump,
)
from registry.models import Config, ConfigVersion
from registry.services import configs as service


def _created(added: service.Added) -> tuple[Response, int]:
    row = added.version
    answer = VersionCreated(
        name=added.config.name,
        version=row.version,
        hash=row.hash,
        warnings=row.warnings or [],  # type: ignore[arg-type]
        created=added.created,
        parent_version=row.parent_version,
    )
    return jsonify(dump(answer)), 201 if added.created else 200


def _summary(row: ConfigVersion) -> dict[str, Any]:
    return {
        "version": row.version,
        "hash": row.hash,
        "message": row.message,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "parent_version": row.parent_version,
    }


@bp.get("/configs")
@requires("read")
def list_configs() -> Any:
    """List every config with its latest version.
    ---
    get:
      summary: List configs
      responses:
        200:
          description: every config, by name
          content: {application/json: {schema: ConfigList}}
    """
    items = [
        ConfigItem(
            name=s.config.name,
            description=s.config.description,
            created_by=s.config.created_by,
            created_at=s.config.created_at,
            latest_version=s.latest_version,
            latest_hash=s.latest_hash,
            version_count=s.version_count,
        )
        for s in service.list_configs(g.db)
    ]
    return jsonify(dump(ConfigList(configs=items)))


@bp.post("/configs")
@requires("write")
@accepts(body=CreateConfigRequest)
def create_config(body: CreateConfigRequest) -> Any:
    """Create a config; the document becomes version 1.
    ---
    post:
      summary: Create a config
      description: >
        The body may also be YAML (Content-Type application/yaml), and `config` may be a
        string of YAML or JSON text.
      requestBody:
        required: true
        content:
          application/json: {schema: CreateConfigRequest}
          application/yaml: {schema: CreateConfigRequest}
      responses:
        201:
          description: created
          content: {application/json: {schema: VersionCreated}}
        409:
          description: the name is taken
          content: {application/json: {schema: Error}}
    """
    added = service.create_config(
        g.db,
        body.name,
        document_of(body.config),
        description=body.description,
        message=body.message,
        created_by=current_user(),
    )
    return _created(added)


@bp.get("/configs/<name>")
@requires("read")
def get_config(name: str) -> Any:
    """One config with its versions, oldest first.
    ---
    get:
      summary: Read a config and its history
      responses:
        200:
          description: the config
          content: {application/json: {schema: ConfigDetail}}
        404:
          description: no such config
          content: {application/json: {schema: Error}}
    """
    config: Config = service.get_config(g.db, name)
    answer = ConfigDetail(
        name=config.name,
        description=config.description,
        created_by=config.created_by,
        created_at=config.created_at,
        latest_version=config.versions[-1].version if config.versions else None,
        versions=[VersionSummary(**_summary(v)) for v in config.versions],
    )
    return jsonify(dump(answer))


@bp.post("/configs/<name>/versions")
@requires("write")
@accepts(body=AddVersionRequest)
def add_version(name: str, body: AddVersionRequest) -> Any:
    """Add a version; an already stored document (same hash) is returned instead.
    ---
    post:
      summary: Add a version
      requestBody:
        required: true
        content:
          application/json: {schema: AddVersionRequest}
          application/yaml: {schema: AddVersionRequest}
      responses:
        201:
          description: a new version
          content: {application/json: {schema: VersionCreated}}
        200:
          description: the document is already stored; `created` is false
          content: {application/json: {schema: VersionCreated}}
        404:
          description: no such config
          content: {application/json: {schema: Error}}
    """
    added = service.add_version(
        g.db,
        name,
        document_of(body.config),
        message=body.message,
        parent_version=body.parent_version,
        created_by=current_user(),
    )
    return _created(added)


@bp.get("/configs/<name>/versions/<version:ref>")
@requires("read")
@accepts(params=VersionQuery)
def get_version(name: str, ref: str, params: VersionQuery) -> Any:
    """One version (a number or `latest`); `?format=yaml|json` answers the bare document.
    ---
    get:
      summary: Read or export a version
      parameters:
        - in: query
          name: format
          schema: {type: string, enum: [yaml, json]}
          description: answer the bare document as YAML (text/yaml) or JSON
      responses:
        200:
          description: the version
          content:
            application/json: {schema: VersionDetail}
            text/yaml: {schema: {type: string}}
        404:
          description: no such config or version
          content: {application/json: {schema: Error}}
    """
    row = service.resolve_version(g.db, name, ref)
    if params.format == "yaml":
        return Response(spec.dump(row.document, "yaml"), mimetype="text/yaml")
    if params.format == "json":
        return jsonify(row.document)
    answer = VersionDetail(
        name=name,
        config=row.document,
        warnings=row.warnings or [],  # type: ignore[arg-type]
        **_summary(row),
    )
    return jsonify(dump(answer))


@bp.get("/configs/<name>/diff")
@requires("read")
@accepts(params=DiffQuery)
def diff(name: str, params: DiffQuery) -> Any:
    """The fields that differ between two versions.
    ---
    get:
      summary: Diff two versions
      parameters:
        - {in: query, name: from, schema: {type: string}, description: "version (default: to - 1)"}
        - {in: query, name: to, schema: {type: string}, description: "version (default: latest)"}
        - {in: query, name: all, schema: {type: string}, description: "1 lists every field"}
      responses:
        200:
          description: the changes
          content: {application/json: {schema: DiffAnswer}}
        404:
          description: no such config or version
          content: {application/json: {schema: Error}}
    """
    result = service.diff_versions(
        g.db,
        name,
        params.from_,
        params.to,
        all_fields=params.all,
    )
    answer = DiffAnswer.model_validate(
        {
            "name": name,
            "from": result.from_version,
            "to": result.to_version,
            "changes": result.changes,
        }
    )
    return jsonify(dump(answer))
