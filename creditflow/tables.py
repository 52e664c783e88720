"""Our own tables (SQLAlchemy): what the system learns and records.

SQLite in the embedded profile, Postgres in production; same code. The schema is Alembic's
(creditflow/migrations/): a change to a table here needs a migration there, which
``creditflow db upgrade`` applies to databases users already have (tests/data/test_migrations.py
fails while the two differ).
"""

from __future__ import annotations

import sqlalchemy as sa

# Stable constraint names: migrations (SQLite's batch mode in particular) refer to constraints
# by name. Primary keys get PostgreSQL's own default name, so databases that `create_all` made
# before migrations existed have the same names as migrated ones.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "%(table_name)s_pkey",
}
metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

ingestion_log = sa.Table(
    "ingestion_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("rows_in", sa.Integer, nullable=False),
    sa.Column("accepted", sa.Integer, nullable=False),
    sa.Column("quarantined", sa.Integer, nullable=False),
    sa.Column("late", sa.Integer, nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),  # {rule: rows}
    sa.Column("warnings", sa.JSON, nullable=False),  # {"outliers": {column: rows}}
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("table_name", "batch_id", name="uq_ingestion_batch"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(64), nullable=False, index=True),
    sa.Column("batch_id", sa.String(64), nullable=False, index=True),
    sa.Column("row_number", sa.Integer, nullable=True),  # position in the batch (0-based)
    sa.Column("reasons", sa.Text, nullable=False),  # the rules broken, "; "-separated
    sa.Column("payload", sa.Text, nullable=False),  # the row as received (JSON, or raw text)
    sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
)


# Which stored model is champion, candidate or retired. The artifacts and their metadata stay
# in the BentoML model store; the stage is a row here, so a promotion is one transaction.
model_stages = sa.Table(
    "model_stages",
    metadata,
    sa.Column("tag", sa.String(128), primary_key=True),
    sa.Column("stage", sa.String(16), nullable=False),  # candidate, champion, retired
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Every registration, promotion (forced or not), refusal and rollback, with its reasons.
model_events = sa.Table(
    "model_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tag", sa.String(128), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False, default=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)


# Every prediction the service made: what feedback labels join to later. Entity keys are
# stored as a keyed hash (HMAC), never raw.
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("prediction_id", sa.String(32), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_tag", sa.String(128), nullable=False),
    sa.Column("entity_hash", sa.String(64), nullable=False, index=True),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("default_probability", sa.Float, nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("decided_by", sa.String(64), nullable=False),
    sa.Column("rules_fired", sa.JSON, nullable=False),
)
