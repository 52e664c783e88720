"""The database of the current profile: an engine, with our tables (creditflow/tables.py) at
the newest migration (creditflow/migrate.py) unless the process serves."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import sqlalchemy as sa

from creditflow.config import Settings, get_settings
from creditflow.migrate import upgrade_engine


@cache
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True)


_migrated: set[str] = set()
_migrating = threading.Lock()
_auto_migrate = [True]


def serve_without_migrating() -> None:
    """Make every later ``get_engine()`` of this process leave the schema alone: the service
    must not change a database it may share with other replicas and jobs (it refuses to be
    ready instead while the database is not at head: ``creditflow.migrate.schema_ready``)."""
    _auto_migrate[0] = False


def get_engine(settings: Settings | None = None, *, migrate: bool | None = None) -> sa.Engine:
    """The engine of the current profile's database.

    Unless told not to (``migrate=False``, or a serving process), our tables are first brought
    to the newest migration, once per process: a new home or an older database just works for
    CLI commands, jobs and tests.
    """
    settings = settings or get_settings()
    if settings.sql_url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = _engine(settings.sql_url)
    migrate = _auto_migrate[0] if migrate is None else migrate
    if migrate and settings.sql_url not in _migrated:
        with _migrating:
            if settings.sql_url not in _migrated:
                upgrade_engine(engine)
                _migrated.add(settings.sql_url)
    return engine


def upgrade(settings: Settings | None = None, revision: str = "head") -> dict[str, Any]:
    """Migrate the current profile's database (``creditflow db upgrade``)."""
    return upgrade_engine(get_engine(settings, migrate=False), revision)
