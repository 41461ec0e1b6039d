"""The OpenAPI document, generated from the code.

apispec with its Flask plugin walks ``app.url_map``: each view's docstring carries a YAML
operation fragment after ``---``; request and response bodies are the pydantic models of
``registry.http.api.schemas``, registered as components from ``model_json_schema``. What the
docstrings leave out is filled in from the code: path parameters from the rule's converters,
the bearer-token requirement from ``@requires``, and the error answers every route shares.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec, yaml_utils
from apispec_webframeworks.flask import FlaskPlugin
from flask import Flask
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from registry.http.api.schemas import COMPONENTS
from registry.services.auth import CAPABILITIES

API_PREFIX = "/api/v1"
_METHODS = ("get", "post", "put", "patch", "delete")
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_SHARED_ERRORS = {
    "400": "malformed JSON or YAML (with line and column), or a bad parameter",
    "413": "the body is larger than 1 MiB",
    "422": "invalid fields; `errors` names each one",
}
_CONVERTER_TYPES = {"IntegerConverter": "integer", "FloatConverter": "number"}


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
        parameters.extend(_path_parameters(rule))
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
        summary = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
        capability = getattr(view, "required_capability", None)
        for method in methods:
            op = operations.setdefault(method, {})
            op.setdefault("summary", summary)
            op.setdefault("operationId", f"{rule.endpoint}_{method}".replace(".", "_"))
            op.setdefault("tags", [rule.rule.removeprefix(API_PREFIX).split("/")[1]])
            responses = op.setdefault("responses", {})
            if not any(str(code).startswith("2") for code in responses):
                responses["200"] = {"description": "success"}
            if capability is None:
                op.setdefault("security", [])
            else:
                roles = sorted(r for r, caps in CAPABILITIES.items() if capability in caps)
                op.setdefault("x-capability", capability)
                op.setdefault("description", f"Roles: {', '.join(roles)}.")
                responses.setdefault("401", _error("no token, or an unknown or revoked one"))
                responses.setdefault("403", _error(f"the token's role may not {capability}"))
            if method in ("post", "put", "patch"):
                for code, text in _SHARED_ERRORS.items():
                    responses.setdefault(code, _error(text))


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _ERROR}


def _path_parameters(rule: Rule) -> list[dict[str, Any]]:
    converters = rule._converters  # noqa: SLF001 - werkzeug keeps them only here
    return [
        {
            "in": "path",
            "name": arg,
            "required": True,
            "schema": {"type": _CONVERTER_TYPES.get(type(converters.get(arg)).__name__, "string")},
        }
        for arg in sorted(rule.arguments)
    ]


def _register_components(spec: APISpec) -> None:
    _, top = models_json_schema(
        [(model, "validation") for model in COMPONENTS],
        ref_template="#/components/schemas/{model}",
    )
    for name, schema in top.get("$defs", {}).items():
        spec.components.schema(name, schema)
    spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "an API token"}
    )


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
