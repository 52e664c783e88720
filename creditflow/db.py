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
    engine = sa.create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection, _record) -> None:
    """SQLite in write-ahead-log mode: readers (monitoring, the service's gauges) never block
    the writers (the prediction log, labels), and a commit costs one append instead of a
    journal rewrite (labels/s measured about 4x; docs/benchmarks.md). Full sync keeps every
    acknowledged label through a power loss; a writer waits for the lock up to 30 s."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


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
