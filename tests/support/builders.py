"""Stored rows the service tests start from."""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.models import Config, ConfigVersion


def make_version(session: Session, name: str = "tiny", seed: int = 7) -> ConfigVersion:
    """A stored config version (the queue does not look inside the document but for the seed)."""
    config = Config(name=name)
    version = ConfigVersion(
        config=config, version=1, hash=f"{name:0<64}"[:64], document={"training": {"seed": seed}}
    )
    session.add_all([config, version])
    session.flush()
    return version
