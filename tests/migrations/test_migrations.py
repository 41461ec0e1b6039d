"""Migrations are the schema's source of truth: up from empty, no drift, down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from registry.db import Base
from tests.support.dbs import alembic_config, database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend, of this test's own."""
    with database(request.param, tmp_path) as url:
        yield url


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_check_downgrade_upgrade(empty_url: str) -> None:
    cfg = alembic_config(empty_url)
    command.upgrade(cfg, "head")
    assert tables(empty_url) == set(Base.metadata.tables)
    command.check(cfg)  # raises if the models and the migrations disagree

    command.downgrade(cfg, "base")
    assert tables(empty_url) == set()

    command.upgrade(cfg, "head")
    command.check(cfg)
    assert tables(empty_url) == set(Base.metadata.tables)


def test_each_revision_steps_down_and_up(empty_url: str) -> None:
    cfg = alembic_config(empty_url)
    revisions = [s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()]
    command.upgrade(cfg, "head")
    for _ in revisions:
        command.downgrade(cfg, "-1")
    assert tables(empty_url) == set()
    for _ in revisions:
        command.upgrade(cfg, "+1")
    command.check(cfg)


def test_history_is_linear() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
