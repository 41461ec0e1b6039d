"""The config list and the new-config / new-version form (with its live check)."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, redirect, render_template, request, url_for

from registry.errors import RegistryError
from registry.http.params import ascii_digits, whole_number
from registry.http.web import configform
from registry.http.web.blueprint import bp
from registry.http.web.editing import (
    checked_from_request,
    issue_map,
    start_choices,
    start_document,
    text_inputs,
)
from registry.http.web.signin import current_viewer, requires
from registry.services import configs, summaries


@bp.get("/configs", endpoint="configs")
@requires("read")
def configs_list() -> Any:
    """Configs with their latest version, last run and best val_loss; searchable."""
    search = request.args.get("q", "")[:200]
    rows = summaries.config_rows(g.db, search)
    return render_template("configs.html", rows=rows, q=search)


@bp.get("/configs/-/new")
@requires("write")
def new_config() -> Any:
    """The form for a new config, started from a preset or a stored version."""
    doc = start_document(request.args.get("from"), None)
    checked = configform.check(doc)
    return _form(None, checked, request.args.get("from"), fields={})


@bp.get("/configs/<name>/new")
@requires("write")
def new_version(name: str) -> Any:
    """The form for the next version of ``name`` (from its latest unless told otherwise)."""
    choice = request.args.get("from")
    base = configs.resolve_version(g.db, name, None)
    if ascii_digits(choice):
        choice = f"config:{name}@{choice}"
    doc = start_document(choice, dict(base.document))
    checked = configform.check(doc)
    return _form(name, checked, choice or f"config:{name}@{base.version}", fields={})


@bp.post("/configs/-/new")
@requires("write")
def create_config() -> Any:
    """Check (re-render) or save a new config."""
    return _submit(None)


@bp.post("/configs/<name>/new")
@requires("write")
def create_version(name: str) -> Any:
    """Check (re-render) or save the next version of ``name``."""
    configs.get_config(g.db, name)  # 404 early
    return _submit(name)


@bp.post("/configs/-/check")
@requires("read")
def check() -> Any:
    """The form's inputs validated, as JSON: the page's script calls this as the user types."""
    checked, _ = checked_from_request(request.form, None)
    return jsonify(checked.to_dict())


def _submit(name: str | None) -> Any:
    checked, _ = checked_from_request(request.form, request.files.get("yaml_file"))
    fields, text_errors = text_inputs(request.form)
    checked.field_errors.update(text_errors)
    if request.form.get("action") != "save" or not checked.valid:
        status = 200 if request.form.get("action") != "save" else 422
        return _form(name, checked, request.form.get("from"), fields), status
    viewer = current_viewer()
    author = viewer.name if viewer else None
    message = fields["message"].strip() or None
    try:
        if name is None:
            added = configs.create_config(
                g.db,
                fields["name"].strip(),
                checked.doc,
                description=fields["description"].strip() or None,
                message=message,
                created_by=author,
            )
        else:
            added = configs.add_version(
                g.db,
                name,
                checked.doc,
                message=message,
                created_by=author,
                parent_version=whole_number(request.form.get("parent"), "parent"),
            )
    except RegistryError as err:
        if err.status >= 500:
            raise
        return _form(name, checked, request.form.get("from"), fields, err), err.status
    target = url_for(
        "web.config_detail",
        name=added.config.name,
        v=added.version.version,
        created=int(added.created),
    )
    return redirect(target, code=303)


def _form(
    name: str | None,
    checked: configform.Checked,
    choice: str | None,
    fields: dict[str, str],
    err: RegistryError | None = None,
) -> Any:
    errors = dict(checked.field_errors)
    top = list(checked.other_errors)
    if err is not None:
        for path, messages in issue_map(err).items():
            errors.setdefault(path, []).extend(messages)
        if not err.extra.get("errors"):
            top.append(err.message)
    parent = choice.rpartition("@")[2] if choice and choice.startswith("config:") else ""
    return render_template(
        "config_form.html",
        name=name,
        sections=configform.sections(),
        values=configform.values_of(checked.doc),
        checked=checked,
        errors=errors,
        top_errors=top,
        choices=start_choices(name),
        choice=choice,
        parent=parent if name else "",
        fields=fields,
    )
