"""One config: its versions as a timeline, any version as YAML, diffs, and queueing a run."""

from __future__ import annotations

from typing import Any

from flask import Response, g, redirect, render_template, request, url_for

from registry.document import spec
from registry.errors import BadRequest, RegistryError
from registry.http import context
from registry.http.params import ascii_digits, whole_number
from registry.http.web.blueprint import bp
from registry.http.web.signin import current_viewer, requires
from registry.models import RUN_KINDS
from registry.services import admission, configs, duplicates, queue, remedies, summaries
from registry.services.admission import QuotaExceeded


@bp.get("/configs/<name>")
@requires("read")
def config_detail(name: str) -> Any:
    """The timeline, the chosen version's YAML, a diff and the queue-a-run form."""
    return _page(name, request.args.get("v"))


def _page(name: str, wanted: str | None, run_error: dict[str, Any] | None = None) -> str:
    """The config page showing version ``wanted``; ``run_error``: why the queue form was refused."""
    config = configs.get_config(g.db, name)
    if not config.versions:
        return render_template("config_detail.html", config=config, shown=None)
    numbers = [v.version for v in config.versions]
    shown = _pick(config.versions, wanted, numbers[-1])
    diff, all_fields = _diff(name, numbers)
    return render_template(
        "config_detail.html",
        config=config,
        versions=list(reversed(config.versions)),
        shown=shown,
        yaml_text=spec.dump(shown.document),
        warnings=shown.warnings or [],
        diff=diff,
        diff_rows=_rows(diff),
        all_fields=all_fields,
        trained=summaries.trained_runs(g.db, name),
        kinds=RUN_KINDS,
        created=request.args.get("created"),
        run_error=run_error,
        run_form=request.form,
        max_priority=_quota().max_priority,
    )


def _pick(versions: list[Any], raw: str | None, default: int) -> Any:
    wanted = whole_number(raw, "v") or default
    return next((v for v in versions if v.version == wanted), versions[-1])


def _diff(name: str, numbers: list[int]) -> tuple[configs.Diff | None, bool]:
    """The diff the query asks for (default: the previous version against the latest)."""
    if len(numbers) < 2 and not request.args.get("from"):
        return None, False
    new = request.args.get("to") or str(numbers[-1])
    old = request.args.get("from") or str(max(int(new) - 1, 1) if ascii_digits(new) else numbers[0])
    all_fields = request.args.get("all") == "1"
    try:
        return configs.diff_versions(g.db, name, old, new, all_fields=all_fields), all_fields
    except RegistryError:
        return None, all_fields


def _rows(diff: configs.Diff | None) -> list[tuple[str, Any, Any, bool]]:
    """(field, from, to, changed) for the diff table."""
    if diff is None:
        return []
    return [
        (
            c["field"],
            c["from"],
            c["to"],
            c["from"] != c["to"] or type(c["from"]) is not type(c["to"]),
        )
        for c in diff.changes
    ]


@bp.get("/configs/<name>/versions/<int:version>.yaml")
@requires("read")
def version_yaml(name: str, version: int) -> Any:
    """A version as a YAML download."""
    text = configs.export(g.db, name, version, "yaml")
    filename = f"{name}-v{version}.yaml"
    return Response(
        text,
        mimetype="application/yaml",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.post("/configs/<name>/runs")
@requires("write")
def queue_run(name: str) -> Any:
    """Queue a train or evaluate run of one version, by the API's rules; then show the run.
    A train run with a trained run chosen is a fine-tune from it.

    Refused (a duplicate without ``force``, over the quota, a bad field): the form again,
    saying why, with the answer's status.
    """
    form = request.form
    version = configs.resolve_version(g.db, name, form.get("version") or None)
    kind = form.get("kind", "train")
    try:
        policy = _on_oom(form.get("on_oom"))  # checked before anything is queued
        run = queue.enqueue(
            g.db,
            version,
            kind,
            queue=(form.get("queue") or "default").strip(),
            priority=_priority(form.get("priority")),
            from_run=_int(form.get("from_run")),  # train: a fine-tune of that run
            force=form.get("force") == "1",
            code_version=duplicates.pinned_code_version(),
            quota=_quota(),
            now=queue.db_now(g.db),
        )
        run = remedies.with_policy(g.db, run, policy)
    except RegistryError as err:
        refused = {"message": err.message, "code": err.code, **err.extra}
        headers = {"Retry-After": str(err.retry_after)} if isinstance(err, QuotaExceeded) else {}
        return _page(name, str(version.version), refused), err.status, headers
    return redirect(url_for("web.run_detail", run_id=run.id), code=303)


def _quota() -> admission.Quota:
    """What the signed-in viewer may queue."""
    viewer = current_viewer()
    who, role = (viewer.name, viewer.role) if viewer else ("", "viewer")
    return admission.quota_for(context.settings(), who, role)


def _priority(raw: str | None) -> int:
    try:
        value = int(raw or 0)
    except ValueError:
        raise BadRequest("priority must be a whole number", field="priority") from None
    if not -1000 <= value <= 1000:
        raise BadRequest("priority must be between -1000 and 1000", field="priority")
    return value


def _on_oom(raw: str | None) -> str:
    value = raw or "fail"
    if value not in ("fail", "remedy"):
        raise BadRequest("on_oom must be fail or remedy", field="on_oom")
    return value


def _int(raw: str | None, name: str = "from_run") -> int | None:
    """``raw`` as a run id (ASCII digits, at most ID_MAX); None when blank; 400 naming it."""
    return whole_number(raw, name)
