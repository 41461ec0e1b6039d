"""The OpenAPI document, generated from the code.

apispec with its Flask plugin walks ``app.url_map``. Each operation is built from:

- the view's ``@accepts`` models: the request body (JSON or YAML) and the query parameters are
  the JSON Schemas of the very models that parse them;
- the rule's converters: the path parameters, with the types and bounds the rule matches;
- the view's ``@requires`` capability: the bearer-token requirement and the 401/403/429 answers;
- the answers the code can give: 400/413/422 where a body is read, 400 (or 422) where
  parameters are, 404 where a path names an object, 409 where a route writes;
- a docstring's YAML fragment after ``---`` (configs and meta routes) or ``ANSWERS`` of
  ``run_schemas`` (run and worker routes): the success answers and the route's own errors;
- ``LINKS``: which later operation an answer's ids feed (for clients and stateful fuzzers).

Every model of ``schemas`` and ``run_schemas`` is a component; errors all share ``Error``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from apispec import APISpec, yaml_utils
from apispec_webframeworks.flask import FlaskPlugin
from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule
from werkzeug.routing.converters import NumberConverter

from registry.document import fields
from registry.http.api import run_schemas, schemas
from registry.http.api.schemas import REF
from registry.services.auth import CAPABILITIES

API_PREFIX = "/api/v1"
_METHODS = ("get", "post", "put", "patch", "delete")
_WRITES = ("write", "work", "admin")
_BODY_TYPES = ("application/json", "application/yaml")

_RUN_ID = {"run_id": "$response.body#/id"}
_CLAIMED = {"run_id": "$response.body#/run/id"}
_LEASE = {"lease": "$response.body#/lease"}
_CONFIG = {"name": "$response.body#/name"}
_VERSION = {"name": "$response.body#/name", "ref": "$response.body#/version"}

#: endpoint -> status -> link name -> (target operationId, its parameters, its body or None).
LINKS: dict[str, dict[int, dict[str, tuple[str, dict[str, str], dict[str, str] | None]]]] = {
    "api.create_config": {
        201: {
            "GetConfig": ("api_get_config_get", _CONFIG, None),
            "GetVersion": ("api_get_version_get", _VERSION, None),
            "AddVersion": ("api_add_version_post", _CONFIG, None),
            "Diff": ("api_diff_get", _CONFIG, None),
        }
    },
    "api.add_version": {201: {"GetVersion": ("api_get_version_get", _VERSION, None)}},
    "api.create_run": {
        201: {
            "GetRun": ("api_get_run_get", _RUN_ID, None),
            "CancelRun": ("api_cancel_run_post", _RUN_ID, None),
            "ReproduceRun": ("api_reproduce_run_post", _RUN_ID, None),
        }
    },
    "api.reproduce_run": {201: {"GetRun": ("api_get_run_get", _RUN_ID, None)}},
    "api.claim": {
        200: {
            "Heartbeat": ("api_heartbeat_post", _CLAIMED, _LEASE),
            "Complete": ("api_complete_post", _CLAIMED, _LEASE),
            "Release": ("api_release_post", _CLAIMED, _LEASE),
        }
    },
}


class UrlMapPlugin(FlaskPlugin):
    """FlaskPlugin that documents one url_map rule at a time and fills in the code's facts."""

    def path_helper(  # type: ignore[override]
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        parameters: list[dict[str, Any]] | None = None,
        *,
        view: Any = None,
        app: Flask | None = None,
        rule: Rule | None = None,
        **kwargs: Any,
    ) -> str | None:
        if rule is None:
            return super().path_helper(path, operations, parameters, view=view, app=app, **kwargs)
        assert operations is not None and parameters is not None
        operations.update(yaml_utils.load_operations_from_docstring(view.__doc__ or ""))
        parameters.extend(path_parameters(rule))
        return self.flaskpath2openapi(rule.rule)

    def operation_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        *,
        view: Any = None,
        rule: Rule | None = None,
        **kwargs: Any,
    ) -> None:
        if operations is None or view is None or rule is None:
            return
        methods = [m.lower() for m in sorted(rule.methods or ()) if m.lower() in _METHODS]
        for name in list(operations):
            if name in _METHODS and name not in methods:
                del operations[name]  # documented on a sibling rule with the same path
        for method in methods:
            _document(operations.setdefault(method, {}), method, view, rule)


def _document(op: dict[str, Any], method: str, view: Any, rule: Rule) -> None:
    """Fill in one operation from the view's models, capability and answers."""
    op.setdefault("summary", (view.__doc__ or rule.endpoint).strip().splitlines()[0])
    op.setdefault("operationId", f"{rule.endpoint}_{method}".replace(".", "_"))
    op.setdefault("tags", [rule.rule.removeprefix(API_PREFIX).split("/")[1]])
    body = getattr(view, "body_model", None)
    params = getattr(view, "params_model", None)
    if body is not None:
        content = {ctype: {"schema": {"$ref": _ref(body)}} for ctype in _BODY_TYPES}
        op["requestBody"] = {"required": True, "content": content}
    if params is not None:
        parsed = query_parameters(params)
        names = {p["name"] for p in parsed}
        written = [p for p in op.get("parameters", []) if p["name"] not in names]
        op["parameters"] = [*parsed, *written]
    responses = op["responses"] = {str(k): v for k, v in op.get("responses", {}).items()}
    _documented_answers(responses, rule.endpoint)
    if not any(str(code).startswith("2") for code in responses):
        responses["200"] = {"description": "success"}
    _derived_answers(op, responses, view, rule, method)
    for code, links in LINKS.get(rule.endpoint, {}).items():
        responses[str(code)]["links"] = {name: _link(*link) for name, link in links.items()}


def _documented_answers(responses: dict[str, Any], endpoint: str) -> None:
    """The route's own answers from the ``ANSWERS`` tables; their JSON schema is the code's
    word, over a docstring's (whose other content types stay)."""
    table = {**schemas.ANSWERS.get(endpoint, {}), **run_schemas.ANSWERS.get(endpoint, {})}
    for code, (schema, description) in table.items():
        answer = responses.setdefault(str(code), {"description": description})
        if code == 204:
            continue
        for ctype, one in _by_content_type(schema).items():
            answer.setdefault("content", {})[ctype] = {"schema": _schema(one)}


def _by_content_type(schema: Any) -> dict[str, Any]:
    """``schema`` per content type: as it is when it names them (``{"text/yaml": ...}``)."""
    if isinstance(schema, dict) and schema and all("/" in key for key in schema):
        return schema
    return {"application/json": schema}


def _schema(schema: type[BaseModel] | dict[str, Any] | None) -> dict[str, Any]:
    """A model as its reference (None: the error shape); a JSON Schema as it is."""
    if isinstance(schema, dict):
        return schema
    return {"$ref": _ref(schema or schemas.Error)}


def _derived_answers(
    op: dict[str, Any], responses: dict[str, Any], view: Any, rule: Rule, method: str
) -> None:
    """The answers the code gives on its own: auth, body, parameters, missing objects, conflicts."""
    capability = getattr(view, "required_capability", None)
    body = getattr(view, "body_model", None)
    params = getattr(view, "params_model", None)
    shared: dict[int, str] = {}
    if body is not None:
        shared[400] = "malformed JSON or YAML (with line and column), or a bad value"
        shared[413] = "the body is larger than 1 MiB"
        shared[422] = "invalid fields; `errors` names each one"
    if params is not None:
        shared[params.invalid_status] = "a bad query parameter; `field` names it"
        # registry serve's worker (registry.cli.serving) refuses an over-long request line.
        shared[414] = "the URL with its query string is too long"
    if rule.arguments:
        shared[404] = "no such " + " or ".join(sorted(rule.arguments))
    if capability is None:
        op.setdefault("security", [])
    else:
        roles = sorted(r for r, caps in CAPABILITIES.items() if capability in caps)
        op.setdefault("x-capability", capability)
        op.setdefault("description", f"Roles: {', '.join(roles)}.")
        shared[401] = "no token, or an unknown, revoked or expired one"
        shared[403] = f"the token's role may not {capability}"
        shared[429] = "too many failed sign-ins or tokens from this client; see retry_after"
        if capability in _WRITES and method != "get":
            shared[409] = "the change conflicts with stored data; retry"
    for code, text in sorted(shared.items()):
        responses.setdefault(str(code), _error(text))


def _ref(model: type[BaseModel]) -> str:
    return REF.format(model=model.__name__)


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _ref(model)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(schemas.Error)}


def _link(target: str, params: dict[str, str], body: dict[str, str] | None) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": target, "parameters": dict(params)}
    if body is not None:
        link["requestBody"] = dict(body)
    return link


def path_parameters(rule: Rule) -> list[dict[str, Any]]:
    """The rule's path parameters, typed and bounded as its converters match them."""
    converters = rule._converters  # werkzeug keeps them only here
    return [
        {"in": "path", "name": arg, "required": True, "schema": _converter_schema(converters[arg])}
        for arg in sorted(rule.arguments)
    ]


def _converter_schema(converter: Any) -> dict[str, Any]:
    own = getattr(converter, "openapi_schema", None)
    if isinstance(own, dict):
        return dict(own)
    if isinstance(converter, NumberConverter):
        schema: dict[str, Any] = {"type": "integer" if converter.num_convert is int else "number"}
        low = converter.min if converter.min is not None else (None if converter.signed else 0)
        if low is not None:
            schema["minimum"] = low
        if converter.max is not None:
            schema["maximum"] = converter.max
        return schema
    return {"type": "string", "pattern": f"^(?:{converter.regex})$"}


def query_parameters(model: type[schemas.Query]) -> list[dict[str, Any]]:
    """One query parameter per field of ``model``, with the field's JSON Schema."""
    schema = model.model_json_schema(mode="validation", ref_template=REF)
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(prop)
        parameter = {"in": "query", "name": name, "required": name in required, "schema": prop}
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append(parameter)
    return parameters


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without the null branch: an absent parameter is the null."""
    prop = {k: v for k, v in prop.items() if k != "title" and not (k == "default" and v is None)}
    branches = [b for b in prop.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        prop = {**branches[0], **prop}
    elif branches:
        prop["anyOf"] = branches
    return prop


def _models(*modules: ModuleType) -> Iterator[type[BaseModel]]:
    bases = (schemas.Body, schemas.Query, schemas.Answer)
    for module in modules:
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseModel)
                and value.__module__ == module.__name__
                and value not in bases
                and not issubclass(value, schemas.Query)
            ):
                yield value


def _register_components(spec: APISpec) -> None:
    _, top = models_json_schema(
        [(model, "validation") for model in _models(schemas, run_schemas)], ref_template=REF
    )
    for name, schema in sorted({**top.get("$defs", {}), **_document_schemas()}.items()):
        spec.components.schema(name, schema)
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "an API token"}
    )


def _document_schemas() -> dict[str, Any]:
    """The config document's JSON Schema as components: ``ConfigDocument`` and its sections."""
    schema = fields.json_schema()
    text = json.dumps(schema).replace('"#/$defs/', '"' + REF.format(model=""))
    root = json.loads(text)
    defs = root.pop("$defs", {})
    for key in ("$schema", "$id"):
        root.pop(key, None)
    return {**defs, "ConfigDocument": root}


def build_spec(app: Flask) -> APISpec:
    """An APISpec describing every route of ``app`` under /api/v1."""
    spec = APISpec(
        title="config-registry",
        version="1",
        openapi_version="3.1.0",
        plugins=[UrlMapPlugin()],
        info={"description": "Hash-versioned transformer configs and the runs that train them."},
        servers=[{"url": "/"}],
        security=[{"bearer": []}],
    )
    _register_components(spec)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if not rule.rule.startswith(API_PREFIX):
            continue
        spec.path(view=app.view_functions[rule.endpoint], app=app, rule=rule)
    return spec


def openapi_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app`` as a dict (built once per app)."""
    cached = app.extensions.get("openapi")
    if cached is None:
        cached = app.extensions["openapi"] = build_spec(app).to_dict()
    return cached  # type: ignore[no-any-return]
