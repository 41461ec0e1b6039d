"""``registry submit`` and ``registry export``: config versions over HTTP."""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli.context import current_client
from registry.errors import RegistryError


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="the config's name")
@click.option("--message", "-m", help="what changed")
@click.option("--description", help="the config's description (when it is new)")
@click.option("--enqueue", type=click.Choice(["train", "evaluate"]), help="also queue a run of it")
@click.option(
    "--from-run",
    type=int,
    help="with --enqueue: the trained run to evaluate, or (train) to fine-tune from",
)
@click.option(
    "--on-oom",
    type=click.Choice(["fail", "remedy"]),
    default="fail",
    show_default=True,
    help="with --enqueue train: remedy queues the guide's next remedy after an out of memory",
)
def submit(
    file: Path,
    name: str,
    message: str | None,
    description: str | None,
    enqueue: str | None,
    from_run: int | None,
    on_oom: str,
) -> None:
    """Register FILE (YAML or JSON) as the next version of config NAME."""
    from registry.document.spec import parse_document

    fmt = "json" if file.suffix.lower() == ".json" else "yaml"
    document = parse_document(file.read_text(encoding="utf-8"), fmt)
    client = current_client()
    try:
        answer = client.create_config(name, document, description=description, message=message)
    except RegistryError as err:
        if err.code != "conflict":
            raise
        answer = client.add_version(name, document, message=message)
    state = "created" if answer["created"] else "unchanged: the same document is stored"
    click.echo(f"{answer['name']} version {answer['version']} ({state})")
    click.echo(f"hash {answer['hash']}")
    for warning in answer.get("warnings") or []:
        click.echo(f"warning: {warning['field']}: {warning['message']}")
    if enqueue:
        body = {"config": answer["name"], "version": answer["version"], "kind": enqueue}
        body |= {"on_oom": on_oom} | ({"from_run": from_run} if from_run is not None else {})
        run = client.request("POST", "/api/v1/runs", json=body)
        click.echo(f"queued {enqueue} run {run.get('id')} ({run.get('status', 'queued')})")


@click.command()
@click.argument("ref", metavar="NAME[@VERSION]")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
def export(ref: str, fmt: str) -> None:
    """Print a config version (default: the latest) as YAML or JSON."""
    name, _, version = ref.partition("@")
    text = current_client().export(name, version or "latest", fmt)
    click.echo(text, nl=not text.endswith("\n"))
