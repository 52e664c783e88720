"""Retraining and shadow answers: the retrain runs table; the prediction log's request id (a
shadow model's answer shares its request's), role (champion or shadow) and exploration flag.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 14:34:07.531087
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "retrain_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("champion_tag", sa.String(length=128), nullable=True),
        sa.Column("challenger_tag", sa.String(length=128), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("rows", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("retrain_runs_pkey")),
    )
    with op.batch_alter_table("retrain_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_retrain_runs_as_of"), ["as_of"], unique=False)

    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("explored", sa.Boolean(), nullable=True))
        batch_op.create_index(batch_op.f("ix_predictions_request_id"), ["request_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_predictions_request_id"))
        batch_op.drop_column("explored")
        batch_op.drop_column("role")
        batch_op.drop_column("request_id")

    with op.batch_alter_table("retrain_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retrain_runs_as_of"))

    op.drop_table("retrain_runs")
