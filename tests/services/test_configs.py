"""The versioning service on both backends: create, add (dedupe), list, diff, export."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.document import spec
from registry.errors import Conflict, InvalidConfig, InvalidInput, NotFound
from registry.models import Config, ConfigVersion
from registry.services import configs

BASE: dict[str, Any] = {"training": {"learning_rate": 3e-5}}


def doc(lr: float = 3e-5, **training: Any) -> dict[str, Any]:
    """A small valid document that differs by learning rate (and anything else given)."""
    return {"training": {"learning_rate": lr, **training}}


def counts(session: Session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(Config)) or 0,
        session.scalar(select(func.count()).select_from(ConfigVersion)) or 0,
    )


def test_create_stores_version_one_normalised(session: Session) -> None:
    added = configs.create_config(
        session, "tiny", doc(), description="a tiny model", message="first", created_by="ann"
    )
    session.commit()
    assert added.created and added.version.version == 1
    assert added.version.parent_version is None
    assert added.version.document == spec.normalize(doc())
    assert added.version.hash == spec.config_hash(spec.normalize(doc()))
    assert added.config.description == "a tiny model"
    assert added.version.created_by == "ann" and added.version.message == "first"


def test_create_keeps_warnings(session: Session) -> None:
    added = configs.create_config(session, "hot", {"generation": {"temperature": 1.5}})
    fields = [w["field"] for w in added.version.warnings or []]
    assert "generation.temperature" in fields


def test_create_existing_name_conflicts(session: Session) -> None:
    configs.create_config(session, "tiny", doc())
    session.commit()
    with pytest.raises(Conflict):
        configs.create_config(session, "tiny", doc(4e-5))
    session.rollback()
    assert counts(session) == (1, 1)


@pytest.mark.parametrize(
    "name", ["", " ", "a" * 201, "has space", "../etc", "a/b", "-lead", ".hidden", "ü", "a\nb", 3]
)
def test_bad_names_are_refused(session: Session, name: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        configs.create_config(session, name, doc())
    assert info.value.extra["errors"][0]["field"] == "name"
    assert counts(session) == (0, 0)


@pytest.mark.parametrize("name", ["a", "A" * 200, "tiny-llama_v2.1", "0day"])
def test_good_names(session: Session, name: str) -> None:
    assert configs.create_config(session, name, doc()).config.name == name


def test_invalid_document_stores_nothing(session: Session) -> None:
    bad = {"model": {"model_dim": 100, "num_attention_heads": 8}}
    with pytest.raises(InvalidConfig) as info:
        configs.create_config(session, "bad", bad)
    assert info.value.status == 422
    assert any(e["field"].startswith("model.") for e in info.value.extra["errors"])
    assert counts(session) == (0, 0)


def test_add_version_numbers_and_parents(session: Session) -> None:
    configs.create_config(session, "tiny", doc(1e-5))
    v2 = configs.add_version(session, "tiny", doc(2e-5), message="lr up")
    v3 = configs.add_version(session, "tiny", doc(3e-5))
    v4 = configs.add_version(session, "tiny", doc(4e-5), parent_version=2)
    session.commit()
    assert [a.version.version for a in (v2, v3, v4)] == [2, 3, 4]
    assert [a.version.parent_version for a in (v2, v3, v4)] == [1, 2, 2]
    assert v2.version.message == "lr up"


def test_add_version_dedupes_against_any_stored_version(session: Session) -> None:
    configs.create_config(session, "tiny", doc(1e-5))
    configs.add_version(session, "tiny", doc(2e-5))
    again = configs.add_version(session, "tiny", doc(1e-5))
    assert not again.created and again.version.version == 1
    assert counts(session) == (1, 2)


def test_formatting_and_spelled_out_defaults_do_not_change_the_hash(session: Session) -> None:
    first = configs.create_config(session, "tiny", doc())
    spelled = spec.normalize(doc())  # every default written out, keys in another order
    reordered = dict(reversed(list(spelled.items())))
    same = configs.add_version(session, "tiny", reordered)
    assert not same.created and same.version.version == 1
    assert same.version.hash == first.version.hash


def test_add_version_errors(session: Session) -> None:
    with pytest.raises(NotFound):
        configs.add_version(session, "nope", doc())
    configs.create_config(session, "tiny", doc())
    with pytest.raises(InvalidInput) as info:
        configs.add_version(session, "tiny", doc(2e-5), parent_version=9)
    assert info.value.extra["errors"][0]["field"] == "parent_version"
    with pytest.raises(InvalidConfig):
        configs.add_version(session, "tiny", {"training": {"learning_rate": "fast"}})
    assert counts(session) == (1, 1)


def test_lost_race_retries_in_a_savepoint(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs.create_config(session, "tiny", doc(1e-5))
    configs.add_version(session, "tiny", doc(2e-5))
    real = configs._latest_number
    stale = iter([1])  # as if another writer had just taken version 2

    def latest(s: Session, config_id: int) -> int:
        return next(stale, None) or real(s, config_id)

    monkeypatch.setattr(configs, "_latest_number", latest)
    added = configs.add_version(session, "tiny", doc(3e-5))
    session.commit()  # the failed insert did not poison the transaction
    assert added.version.version == 3
    assert [v.version for v in configs.get_config(session, "tiny").versions] == [1, 2, 3]


def test_retries_run_out_as_a_conflict(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    configs.create_config(session, "tiny", doc(1e-5))
    session.commit()
    monkeypatch.setattr(configs, "_latest_number", lambda s, c: 0)
    with pytest.raises(Conflict):
        configs.add_version(session, "tiny", doc(2e-5))
    # The session is still usable after the failed savepoints.
    assert counts(session) == (1, 1)
    session.commit()


def test_list_configs(session: Session) -> None:
    configs.create_config(session, "b-config", doc(1e-5), description="B")
    configs.add_version(session, "b-config", doc(2e-5))
    configs.create_config(session, "a-config", doc(1e-5))
    session.commit()
    rows = configs.list_configs(session)
    assert [r.config.name for r in rows] == ["a-config", "b-config"]
    b = rows[1]
    assert (b.latest_version, b.version_count) == (2, 2)
    assert b.latest_hash == configs.get_version(session, "b-config", 2).hash
    assert rows[0].latest_version == 1


def test_get_and_resolve_versions(session: Session) -> None:
    configs.create_config(session, "tiny", doc(1e-5))
    configs.add_version(session, "tiny", doc(2e-5))
    assert configs.resolve_version(session, "tiny", None).version == 2
    assert configs.resolve_version(session, "tiny", "latest").version == 2
    assert configs.resolve_version(session, "tiny", "1").version == 1
    with pytest.raises(NotFound):
        configs.resolve_version(session, "tiny", 3)
    with pytest.raises(NotFound):
        configs.resolve_version(session, "nope", 1)
    with pytest.raises(InvalidInput):
        configs.resolve_version(session, "tiny", "first")
    detail = configs.get_config(session, "tiny")
    assert [v.version for v in detail.versions] == [1, 2]


def test_diff(session: Session) -> None:
    configs.create_config(session, "tiny", doc(3e-5))
    configs.add_version(session, "tiny", doc(5e-5, seed=7))
    result = configs.diff_versions(session, "tiny", 1, 2)
    assert (result.from_version, result.to_version) == (1, 2)
    fields = {c["field"]: (c["from"], c["to"]) for c in result.changes}
    assert fields["training.learning_rate"] == (3e-5, 5e-5)
    assert fields["training.seed"] == (42, 7)
    assert len(fields) == 2
    default = configs.diff_versions(session, "tiny", None, None)
    assert (default.from_version, default.to_version) == (1, 2)
    every = configs.diff_versions(session, "tiny", 1, 2, all_fields=True)
    assert len(every.changes) > len(result.changes)
    assert configs.diff_versions(session, "tiny", 2, 2).changes == []


def test_export_round_trips(session: Session) -> None:
    added = configs.create_config(session, "tiny", doc(4e-5))
    for fmt in ("yaml", "json"):
        text = configs.export(session, "tiny", 1, fmt)
        assert spec.parse_document(text, fmt) == added.version.document
    with pytest.raises(InvalidInput):
        configs.export(session, "tiny", 1, "toml")
