"""Migrations of our own tables (Alembic, configured here: no alembic.ini).

``metadata.create_all`` never alters a table that exists, so a column added in a release would
never reach a database users already have. The schema is therefore the migrations'
(creditflow/migrations/versions/, shipped with the package): ``creditflow db upgrade`` applies
them, CLI commands and jobs apply them on first use (``creditflow.db.get_engine``), and the
service only checks (``schema_ready``): it never changes a shared database.

Only the tables of ``creditflow.tables.metadata`` are ours: the production profile's Feast SQL
registry may live in the same PostgreSQL database, and Alembic neither compares nor drops it.
"""

from __future__ import annotations

import io
import logging
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from creditflow.tables import metadata

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_HINT = "run `creditflow db upgrade`"

# The tables `create_all` made before migrations existed: exactly revision 0001's. A database
# that has them and no migration record is adopted (stamped 0001), then upgraded as usual.
BASELINE = "0001"
BASELINE_TABLES = frozenset(
    {"ingestion_log", "quarantine", "model_stages", "model_events", "predictions"}
)
# Our migration record: not Alembic's default name, which another Alembic-managed application
# sharing the database would also use.
VERSION_TABLE = "creditflow_alembic_version"
# Serializes concurrent upgrades of one PostgreSQL database (jobs, replicas): pg advisory lock.
_PG_LOCK_KEY = 0x63726564_666C6F77  # "credflow"


class SchemaMismatch(RuntimeError):
    """Our database is not at head, or its schema differs from the models in creditflow.tables."""


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Only our tables: Feast's registry tables in a shared database are not Alembic's to touch."""
    return type_ != "table" or name in metadata.tables


# How env.py configures Alembic; `check` and autogenerate see exactly what upgrades see.
CONTEXT_OPTIONS: dict[str, Any] = {
    "target_metadata": metadata,
    "compare_type": True,
    "render_as_batch": True,  # SQLite cannot ALTER most things: batch mode copies the table
    "include_name": include_name,
    "version_table": VERSION_TABLE,
}


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration, programmatically: the package's migrations folder, and the
    connection env.py runs on (None: env.py opens the current profile's database)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this code knows."""
    return _scripts().get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    """The database's revision; None for a database without migrations (empty, or older)."""
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


def is_at_head(engine: sa.Engine) -> bool:
    return current_revision(engine) == head()


def _database(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def upgrade_engine(engine: sa.Engine, revision: str = "head") -> dict[str, Any]:
    """Migrate the database to ``revision``; cheap when it is already at head (one query)."""
    before = current_revision(engine)
    summary = {"database": _database(engine), "before": before, "head": head(), "adopted": False}
    if revision in ("head", head()) and before == head():
        return {**summary, "current": before, "applied": False}
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("select pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config = alembic_config(conn)
        before = _revision(conn)  # under the lock
        if before is None:
            summary["adopted"] = _adopt_unversioned(conn, config)
        command.upgrade(config, revision)
        current = _revision(conn)
    if before != current:
        log.info("%s: migrated from %s to %s", summary["database"], before, current)
    return {**summary, "before": before, "current": current, "applied": before != current}


def _adopt_unversioned(conn: sa.Connection, config: Config) -> bool:
    """Stamp a database made by `create_all` (before migrations existed) as the baseline."""
    ours = set(sa.inspect(conn).get_table_names()) & BASELINE_TABLES
    if not ours:
        return False
    if ours != BASELINE_TABLES:
        raise SchemaMismatch(
            f"tables {sorted(ours)} exist without a migration record, but not all of "
            f"{sorted(BASELINE_TABLES)}: cannot tell which revision they are"
        )
    command.stamp(config, BASELINE)
    log.info("adopted tables made before migrations as revision %s", BASELINE)
    return True


def downgrade(engine: sa.Engine, revision: str = "-1") -> dict[str, Any]:
    """Undo migrations down to ``revision`` ("base": drop all our tables)."""
    with engine.begin() as conn:
        before = _revision(conn)
        command.downgrade(alembic_config(conn), revision)
        current = _revision(conn)
    return {"database": _database(engine), "before": before, "current": current}


def check(engine: sa.Engine) -> None:
    """Raise SchemaMismatch unless the database is at head and matches the models exactly
    (a model changed without a migration, or a database changed by hand)."""
    with engine.connect() as conn:
        config = alembic_config(conn)
        config.stdout = io.StringIO()  # its "no new operations" line is not ours to print
        try:
            command.check(config)
        except CommandError as err:
            raise SchemaMismatch(f"{_database(engine)}: {err}") from err


def status(engine: sa.Engine) -> dict[str, Any]:
    """Where the database is against this code (``creditflow db current``)."""
    current = current_revision(engine)
    return {"database": _database(engine), "current": current, "head": head(),
            "at_head": current == head()}  # fmt: skip


_last_reported: list[str] = []


def schema_ready(engine: sa.Engine) -> bool:
    """Whether a service may serve on this database: reachable and at head. Never migrates.

    Why a message: a service that never becomes ready must say why, once per cause (readiness
    probes ask every few seconds).
    """
    try:
        current, needed = current_revision(engine), head()
    except Exception as err:  # unreachable, refused, no migrations installed: not ready
        problem = f"our database {_database(engine)} cannot be checked: {type(err).__name__}: {err}"
    else:
        if current == needed:
            return True
        problem = (
            f"our database {_database(engine)} is at migration {current or 'none'}, this "
            f"creditflow needs {needed}: {UPGRADE_HINT}"
        )
    if _last_reported != [problem]:
        _last_reported[:] = [problem]
        log.error("not ready: %s", problem)
    return False
