"""The Alembic migrations, shipped inside the package so an installed wheel can upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Any:
    """The Alembic config of the migrations for database ``url`` (logging left as it is)."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig(str(HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg
