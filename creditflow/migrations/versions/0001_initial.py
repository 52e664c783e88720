"""Our tables as `create_all` made them before migrations: the ingestion log, quarantine,
model stages and events, and the prediction log.

Revision ID: 0001
Revises:
Create Date: 2026-12-01 11:06:47.316348
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "ingestion_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("rows_in", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("ingestion_log_pkey")),
        sa.UniqueConstraint("table_name", "batch_id", name="uq_ingestion_batch"),
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("model_events_pkey")),
    )
    with op.batch_alter_table("model_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_events_tag"), ["tag"], unique=False)

    op.create_table(
        "model_stages",
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tag", name=op.f("model_stages_pkey")),
    )
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_tag", sa.String(length=128), nullable=False),
        sa.Column("entity_hash", sa.String(length=64), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("default_probability", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("rules_fired", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", name=op.f("predictions_pkey")),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_predictions_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_predictions_entity_hash"), ["entity_hash"], unique=False
        )

    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("quarantine_pkey")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantine_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_quarantine_table_name"), ["table_name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_table_name"))
        batch_op.drop_index(batch_op.f("ix_quarantine_batch_id"))

    op.drop_table("quarantine")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_predictions_entity_hash"))
        batch_op.drop_index(batch_op.f("ix_predictions_at"))

    op.drop_table("predictions")
    op.drop_table("model_stages")
    with op.batch_alter_table("model_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_events_tag"))

    op.drop_table("model_events")
    op.drop_table("ingestion_log")
