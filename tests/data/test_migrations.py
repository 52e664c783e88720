"""Our tables under migrations: the migrated schema is the models', on SQLite and PostgreSQL,
and a service refuses a database that is not at head."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from creditflow import db, migrate
from creditflow.config import get_settings
from creditflow.db import get_engine
from creditflow.tables import metadata

OURS = set(metadata.tables)


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_gives_the_models_schema_and_downgrade_removes_it(sql_engine):
    assert migrate.current_revision(sql_engine) is None and not migrate.is_at_head(sql_engine)
    with pytest.raises(migrate.SchemaMismatch, match="not up to date"):
        migrate.check(sql_engine)

    summary = migrate.upgrade_engine(sql_engine)
    assert (summary["before"], summary["current"], summary["applied"]) == (
        None,
        migrate.head(),
        True,
    )
    assert migrate.is_at_head(sql_engine) and _tables(sql_engine) >= OURS
    migrate.check(sql_engine)  # no difference between the models and the migrated schema
    assert migrate.upgrade_engine(sql_engine)["applied"] is False  # at head: nothing to do

    migrate.downgrade(sql_engine, "base")
    assert not OURS & _tables(sql_engine) and migrate.current_revision(sql_engine) is None

    migrate.upgrade_engine(sql_engine)
    migrate.check(sql_engine)


@pytest.mark.parametrize("change", ["new column", "wider type"])
def test_check_fails_for_a_model_changed_without_a_migration(sql_engine, monkeypatch, change):
    migrate.upgrade_engine(sql_engine)
    changed = sa.MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.tables.values():
        table.to_metadata(changed)
    if change == "new column":
        changed.tables["predictions"].append_column(sa.Column("channel", sa.String(16)))
    else:
        changed.tables["predictions"].c.decision.type = sa.String(32)  # was 16
    monkeypatch.setitem(migrate.CONTEXT_OPTIONS, "target_metadata", changed)
    with pytest.raises(migrate.SchemaMismatch, match="channel|decision"):
        migrate.check(sql_engine)


def test_check_fails_for_a_database_changed_by_hand(sql_engine):
    migrate.upgrade_engine(sql_engine)
    with sql_engine.begin() as conn:
        conn.execute(sa.text("alter table quarantine add column note varchar(10)"))
    with pytest.raises(migrate.SchemaMismatch, match="note"):
        migrate.check(sql_engine)


def test_tables_that_are_not_ours_are_left_alone(sql_engine):
    """Feast's SQL registry may share the production database, or another application with
    Alembic's default version table: never compared, never dropped, never read."""
    others = sa.MetaData()
    sa.Table("feast_projects", others, sa.Column("project_id", sa.String(255), primary_key=True))
    sa.Table("alembic_version", others, sa.Column("version_num", sa.String(32), primary_key=True))
    others.create_all(sql_engine)
    with sql_engine.begin() as conn:
        conn.execute(sa.text("insert into alembic_version values ('their_rev')"))
    assert migrate.current_revision(sql_engine) is None
    migrate.upgrade_engine(sql_engine)
    migrate.check(sql_engine)  # would report "remove table feast_projects" if it compared it
    migrate.downgrade(sql_engine, "base")
    assert {"feast_projects", "alembic_version"} <= _tables(sql_engine)
    assert not OURS & _tables(sql_engine)
    with sql_engine.connect() as conn:
        assert conn.scalar(sa.text("select version_num from alembic_version")) == "their_rev"


def test_tables_made_before_migrations_are_adopted(sql_engine):
    # How creditflow made its tables before migrations: revision 0001's schema, no record.
    migrate.upgrade_engine(sql_engine, migrate.BASELINE)
    with sql_engine.begin() as conn:
        conn.execute(sa.text(f"drop table {migrate.VERSION_TABLE}"))
    assert migrate.current_revision(sql_engine) is None
    summary = migrate.upgrade_engine(sql_engine)
    assert summary["adopted"] is True and migrate.is_at_head(sql_engine)
    migrate.check(sql_engine)


def test_some_of_our_tables_without_a_migration_record_are_refused(sql_engine):
    metadata.tables["model_stages"].create(sql_engine)
    with pytest.raises(migrate.SchemaMismatch, match="model_stages"):
        migrate.upgrade_engine(sql_engine)


def test_the_service_is_not_ready_unless_the_database_is_at_head(sql_engine, caplog):
    caplog.set_level(logging.ERROR, logger="creditflow.migrate")
    assert migrate.schema_ready(sql_engine) is False  # empty
    assert "run `creditflow db upgrade`" in caplog.text
    migrate.upgrade_engine(sql_engine)
    assert migrate.schema_ready(sql_engine) is True
    with sql_engine.begin() as conn:  # a revision this code does not know (a newer release's)
        conn.execute(sa.text(f"update {migrate.VERSION_TABLE} set version_num = 'ffff'"))
    assert migrate.schema_ready(sql_engine) is False
    with sql_engine.begin() as conn:
        conn.execute(sa.text(f"delete from {migrate.VERSION_TABLE}"))
    assert migrate.schema_ready(sql_engine) is False  # tables there, no migration record


def test_the_service_is_not_ready_when_the_database_cannot_be_read(tmp_path):
    missing_pg = f"postgresql+psycopg://root@127.0.0.1:5432/missing_{uuid.uuid4().hex[:8]}"
    for url in (f"sqlite:///{tmp_path / 'missing' / 'x.db'}", missing_pg):
        engine = sa.create_engine(url)
        try:
            assert migrate.schema_ready(engine) is False
        finally:
            engine.dispose()


def test_jobs_migrate_a_new_home_and_a_serving_process_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDITFLOW_HOME", str(tmp_path / "job"))
    migrated = get_engine(get_settings())
    assert migrate.is_at_head(migrated)
    migrated.dispose()

    monkeypatch.setattr(db, "_auto_migrate", [True])  # restored after: this process serves not
    db.serve_without_migrating()  # what the service module does first
    monkeypatch.setenv("CREDITFLOW_HOME", str(tmp_path / "serving"))
    untouched = get_engine(get_settings())
    assert migrate.current_revision(untouched) is None and not OURS & _tables(untouched)
    untouched.dispose()


def test_db_commands(tmp_path):
    cli = str(Path(sys.executable).parent / "creditflow")
    env = {"CREDITFLOW_HOME": str(tmp_path / "home"), "PATH": str(Path(sys.executable).parent)}

    def run(*args: str) -> dict:
        done = subprocess.run([cli, "db", *args, "--json"], capture_output=True, text=True,
                              env=env)  # fmt: skip
        return {"rc": done.returncode, **json.loads(done.stdout.strip().splitlines()[-1])}

    before = run("current")
    assert before["database"].endswith("creditflow.db")
    assert (before["rc"], before["current"], before["at_head"]) == (0, None, False)
    upgraded = run("upgrade")
    assert (upgraded["rc"], upgraded["current"], upgraded["applied"]) == (0, migrate.head(), True)
    assert run("upgrade")["applied"] is False
    assert run("current")["at_head"] is True
    failed = run("upgrade", "--revision", "nope")
    assert failed["rc"] == 1 and failed["ok"] is False and "nope" in failed["error"]
