"""Alembic's entry point for our tables. creditflow/migrate.py runs it with a connection of
its own; the options (our tables only, batch mode for SQLite, types compared) are there."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from creditflow.config import get_settings
from creditflow.migrate import CONTEXT_OPTIONS


def run(connection: sa.Connection) -> None:
    context.configure(connection=connection, **CONTEXT_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("creditflow's migrations run against a database (no --sql mode)")

connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:  # run without creditflow.migrate (the plain `alembic` command): the profile's database
    engine = sa.create_engine(get_settings().sql_url)
    try:
        with engine.begin() as conn:
            run(conn)
    finally:
        engine.dispose()
