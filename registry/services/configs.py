"""The versioning service: create configs, add versions (deduplicated by hash), diff, export.

Every function takes the session first and only flushes; the caller owns the transaction.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from registry.document import spec
from registry.errors import Conflict, InvalidConfig, InvalidInput, NotFound
from registry.models import Config, ConfigVersion
from registry.services.indexing import index_version

log = logging.getLogger(__name__)

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"
_NAME_RE = re.compile(NAME_PATTERN)
#: How often a version insert that lost a race is retried with the next number.
VERSION_RETRIES = 5
#: Version numbers are 32-bit integers in the database.
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class Added:
    """What adding a document produced: the stored version and whether it is new."""

    config: Config
    version: ConfigVersion
    created: bool


@dataclass(frozen=True)
class ConfigSummary:
    """One row of the config list."""

    config: Config
    latest_version: int | None
    latest_hash: str | None
    version_count: int


def check_name(name: object) -> str:
    """``name`` if it is a valid config name, else InvalidInput naming the field."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            [
                {
                    "field": "name",
                    "message": "a name is 1-200 characters of letters, digits, '.', '_' or '-',"
                    " starting with a letter or digit",
                }
            ]
        )
    return name


def validated(raw: Any) -> spec.Validation:
    """Validate ``raw``; InvalidConfig (nothing is stored) when it has errors."""
    result = spec.validate(raw)
    if not result.valid:
        raise InvalidConfig([e.to_dict() for e in result.errors])
    return result


def create_config(
    session: Session,
    name: str,
    raw: Any,
    *,
    description: str | None = None,
    message: str | None = None,
    created_by: str | None = None,
) -> Added:
    """Create config ``name`` with ``raw`` as version 1; Conflict if the name is taken."""
    check_name(name)
    result = validated(raw)
    if session.scalar(select(Config.id).where(Config.name == name)) is not None:
        raise Conflict(f"config {name!r} already exists; add a version to it instead")
    config = Config(name=name, description=description, created_by=created_by)
    try:
        # A savepoint, so a lost race on the unique name leaves the request usable.
        with session.begin_nested():
            session.add(config)
            session.flush()
    except IntegrityError:
        raise Conflict(f"config {name!r} already exists; add a version to it instead") from None
    version = _insert_version(session, config, result, message, None, created_by)
    return Added(config, version, True)


def add_version(
    session: Session,
    name: str,
    raw: Any,
    *,
    message: str | None = None,
    parent_version: int | None = None,
    created_by: str | None = None,
) -> Added:
    """Add ``raw`` as the next version of ``name``, or return the stored one with its hash."""
    result = validated(raw)
    config = _get_config(session, name, lock=True)
    existing = session.scalar(
        select(ConfigVersion)
        .where(ConfigVersion.config_id == config.id, ConfigVersion.hash == result.hash)
        .order_by(ConfigVersion.version)
        .limit(1)
    )
    if existing is not None:
        return Added(config, existing, False)
    if parent_version is not None:
        get_version(session, name, parent_version, field="parent_version")
    return Added(
        config,
        _insert_version(session, config, result, message, parent_version, created_by),
        True,
    )


def _insert_version(
    session: Session,
    config: Config,
    result: spec.Validation,
    message: str | None,
    parent_version: int | None,
    created_by: str | None,
) -> ConfigVersion:
    """Insert the next version number; a lost race on (config, version) retries with the next."""
    for attempt in range(VERSION_RETRIES):
        latest = _latest_number(session, config.id)
        row = ConfigVersion(
            config_id=config.id,
            version=latest + 1,
            hash=result.hash,
            document=result.normalized,
            warnings=[w.to_dict() for w in result.warnings],
            parent_version=parent_version if parent_version is not None else latest or None,
            message=message,
            created_by=created_by,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
                index_version(session, row)
            return row
        except IntegrityError:
            log.info("version %s of %s was taken; retry %d", latest + 1, config.name, attempt + 1)
    raise Conflict(f"could not number a new version of {config.name!r}; retry")


def _latest_number(session: Session, config_id: int) -> int:
    latest = session.scalar(
        select(func.max(ConfigVersion.version)).where(ConfigVersion.config_id == config_id)
    )
    return int(latest or 0)


def _get_config(session: Session, name: str, *, lock: bool = False) -> Config:
    if not _NAME_RE.fullmatch(name):
        raise NotFound(f"no config named {name!r}")
    query = select(Config).where(Config.name == name)
    if lock:
        # Serialises version additions per config on PostgreSQL, so that two identical
        # concurrent submissions dedupe; SQLite's BEGIN IMMEDIATE already serialises writers.
        query = query.with_for_update()
    config = session.scalar(query)
    if config is None:
        raise NotFound(f"no config named {name!r}")
    return config


def get_config(session: Session, name: str) -> Config:
    """The config ``name`` with its versions loaded; NotFound if there is none."""
    config = None
    if _NAME_RE.fullmatch(name):  # other names cannot exist; do not ask the database
        config = session.scalar(
            select(Config).where(Config.name == name).options(selectinload(Config.versions))
        )
    if config is None:
        raise NotFound(f"no config named {name!r}")
    return config


def list_configs(session: Session) -> list[ConfigSummary]:
    """Every config with its latest version, latest hash and version count, by name."""
    stats = (
        select(
            ConfigVersion.config_id.label("config_id"),
            func.max(ConfigVersion.version).label("latest"),
            func.count(ConfigVersion.id).label("count"),
        )
        .group_by(ConfigVersion.config_id)
        .subquery()
    )
    latest = ConfigVersion.__table__.alias("latest_version")
    rows = session.execute(
        select(Config, stats.c.latest, stats.c.count, latest.c.hash)
        .outerjoin(stats, stats.c.config_id == Config.id)
        .outerjoin(latest, (latest.c.config_id == Config.id) & (latest.c.version == stats.c.latest))
        .order_by(Config.name)
    ).all()
    return [ConfigSummary(c, v, h, int(n or 0)) for c, v, n, h in rows]


def resolve_version(session: Session, name: str, ref: int | str | None) -> ConfigVersion:
    """A version by number, or the latest for ``None``/``"latest"``."""
    if ref is None or ref == "latest":
        config = _get_config(session, name)
        number = _latest_number(session, config.id)
        if number == 0:
            raise NotFound(f"config {name!r} has no versions")
        return get_version(session, name, number)
    if isinstance(ref, int):
        return get_version(session, name, ref)
    if not str(ref).isascii() or not str(ref).isdigit():
        raise InvalidInput(
            [{"field": "version", "message": f"a version is a number or 'latest'; got {ref!r}"}]
        )
    return get_version(session, name, int(ref))


def get_version(session: Session, name: str, version: int, *, field: str = "") -> ConfigVersion:
    """Version ``version`` of ``name``; NotFound (or InvalidInput naming ``field``)."""
    row = None
    # Other names and numbers cannot exist (and would trouble the database); do not ask it.
    if _NAME_RE.fullmatch(name) and 1 <= version <= MAX_VERSION:
        row = session.scalar(
            select(ConfigVersion)
            .join(Config)
            .where(Config.name == name, ConfigVersion.version == version)
        )
    if row is None:
        _get_config(session, name)  # NotFound for the config itself first
        if field:
            raise InvalidInput([{"field": field, "message": f"{name!r} has no version {version}"}])
        raise NotFound(f"config {name!r} has no version {version}")
    return row


@dataclass(frozen=True)
class Diff:
    """The changes between two versions of one config."""

    name: str
    from_version: int
    to_version: int
    changes: list[dict[str, Any]]


def diff_versions(
    session: Session,
    name: str,
    old: int | str | None,
    new: int | str | None,
    *,
    all_fields: bool = False,
) -> Diff:
    """Field-by-field changes from version ``old`` to ``new`` (default: previous -> latest)."""
    to_row = resolve_version(session, name, new)
    if old is None:
        old = max(to_row.version - 1, 1)
    from_row = resolve_version(session, name, old)
    changes = spec.diff(from_row.document, to_row.document, all_fields=all_fields)
    return Diff(name, from_row.version, to_row.version, changes)


def export(session: Session, name: str, ref: int | str | None, fmt: str = "yaml") -> str:
    """Version ``ref`` of ``name`` as YAML or JSON text."""
    if fmt == "yaml":
        return spec.dump(resolve_version(session, name, ref).document, "yaml")
    if fmt == "json":
        return spec.dump(resolve_version(session, name, ref).document, "json")
    raise InvalidInput([{"field": "format", "message": "format is 'yaml' or 'json'"}])
