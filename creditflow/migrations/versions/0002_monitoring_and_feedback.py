"""Monitoring and feedback: labels (outcomes and their corrections), monitoring runs and their
results, the service's per-window request statistics; the prediction log keeps the application
as received (entity keys encrypted) and what produced each answer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 13:37:49.139873
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("prediction_id", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=False),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("corrects", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("labels_pkey")),
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_labels_prediction_id"), ["prediction_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_labels_received_at"), ["received_at"], unique=False)

    op.create_table(
        "monitoring_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("monitoring_runs_pkey")),
    )
    with op.batch_alter_table("monitoring_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_monitoring_runs_as_of"), ["as_of"], unique=False)

    op.create_table(
        "service_stats",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_s", sa.Float(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("unauthorized", sa.Integer(), nullable=False),
        sa.Column("latency_sum_s", sa.Float(), nullable=False),
        sa.Column("latency_histogram", sa.JSON(), nullable=False),
        sa.Column("rejections", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("service_stats_pkey")),
    )
    with op.batch_alter_table("service_stats", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_stats_window_start"), ["window_start"], unique=False
        )

    op.create_table(
        "monitoring_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("model_tag", sa.String(length=128), nullable=True),
        sa.Column("section", sa.String(length=32), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["monitoring_runs.id"],
            name=op.f("fk_monitoring_results_run_id_monitoring_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("monitoring_results_pkey")),
    )
    with op.batch_alter_table("monitoring_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_monitoring_results_run_id"), ["run_id"], unique=False)

    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("application", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("entity_keys", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("endpoint", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("rules_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("code_version", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_predictions_model_tag_at", ["model_tag", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_model_tag_at")
        batch_op.drop_column("code_version")
        batch_op.drop_column("rules_version")
        batch_op.drop_column("endpoint")
        batch_op.drop_column("entity_keys")
        batch_op.drop_column("application")

    with op.batch_alter_table("monitoring_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitoring_results_run_id"))

    op.drop_table("monitoring_results")
    with op.batch_alter_table("service_stats", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_stats_window_start"))

    op.drop_table("service_stats")
    with op.batch_alter_table("monitoring_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitoring_runs_as_of"))

    op.drop_table("monitoring_runs")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_labels_received_at"))
        batch_op.drop_index(batch_op.f("ix_labels_prediction_id"))

    op.drop_table("labels")
