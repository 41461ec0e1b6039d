"""Do not repeat work: a train run whose config hash, seed and code already succeeded.

A fine-tune repeats only a run that started from the same ``from_run``: training a config
from scratch and fine-tuning it from a parent are different work."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.document.codeversion import code_version, is_exact
from registry.errors import DuplicateRun
from registry.models import ConfigVersion, Run


def pinned_code_version() -> str | None:
    """This service's code version when it pins the code (a clean checkout), else None: only
    then can "the same code" be told, so only then are duplicates refused."""
    info = code_version()
    return str(info["code_version"]) if is_exact(info) else None


def find_duplicate(
    session: Session,
    version: ConfigVersion,
    seed: int,
    code_version: str,
    from_run: int | None = None,
) -> Run | None:
    """The first succeeded train run of the same config hash and seed made by ``code_version``."""
    candidates = session.scalars(
        select(Run)
        .join(ConfigVersion, Run.config_version_id == ConfigVersion.id)
        .where(
            ConfigVersion.hash == version.hash,
            Run.kind == "train",
            Run.status == "succeeded",
            Run.seed == seed,
            Run.from_run.is_(None) if from_run is None else Run.from_run == from_run,
        )
        .order_by(Run.id)
    )
    return next(
        (r for r in candidates if (r.provenance or {}).get("code_version") == code_version), None
    )


def refuse_duplicate(
    session: Session, version: ConfigVersion, seed: int, code: str, from_run: int | None = None
) -> None:
    """DuplicateRun (409) naming the run when this work already succeeded."""
    done = find_duplicate(session, version, seed, code, from_run)
    if done is not None:
        raise DuplicateRun(
            f"run {done.id} already trained this config (hash {version.hash[:12]}, seed {seed}) "
            f"with code {code}; see its results, or pass force to train again",
            run=done.id,
        )
