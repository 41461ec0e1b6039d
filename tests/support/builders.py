"""Stored rows the service tests start from."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from registry.models import Config, ConfigVersion, Run


def make_version(session: Session, name: str = "tiny", seed: int = 7) -> ConfigVersion:
    """A stored config version (the queue does not look inside the document but for the seed)."""
    config = Config(name=name)
    version = ConfigVersion(
        config=config, version=1, hash=f"{name:0<64}"[:64], document={"training": {"seed": seed}}
    )
    session.add_all([config, version])
    session.flush()
    return version


def store(session: Session, name: str, doc: dict[str, Any]) -> ConfigVersion:
    """A stored config version of the normalised ``doc``, with its real hash."""
    from registry.document.spec import config_hash

    version = ConfigVersion(
        config=Config(name=name), version=1, hash=config_hash(doc), document=doc
    )
    session.add(version)
    session.flush()
    return version


def succeeded(session: Session, version: ConfigVersion, kind: str = "train", **kw: Any) -> Run:
    """A run of ``version``, claimed by a worker and reported succeeded."""
    from registry.services import queue

    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    run = queue.enqueue(session, version, kind, **kw)
    claimed = queue.claim(session, "w", ["default"], now, 60)
    assert claimed is not None and claimed.run.id == run.id
    provenance = {"code_version": "1.0+gabc"}
    queue.complete(session, run.id, claimed.lease, "succeeded", {}, "m", provenance, None, now)
    return run
