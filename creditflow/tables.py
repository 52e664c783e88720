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


# Every prediction the service made: what feedback labels join to later, and what monitoring
# reads. Entity keys are stored as a keyed hash (HMAC) beside their ciphertext
# (creditflow/applicant_keys.py), never raw; the application's other fields as received.
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
    # Added by 0002 (null in rows logged before): the application without its entity keys, the
    # keys encrypted, which endpoint answered, and what produced the answer.
    sa.Column("application", sa.JSON, nullable=True),
    sa.Column("entity_keys", sa.Text, nullable=True),
    sa.Column("endpoint", sa.String(32), nullable=True),
    sa.Column("rules_version", sa.String(64), nullable=True),
    sa.Column("code_version", sa.String(64), nullable=True),
    # Added by 0003: the request the answer belongs to (a shadow model's answer to the same
    # request shares it), whether it was returned ("champion") or only logged ("shadow"), and
    # whether the exploration policy approved it.
    sa.Column("request_id", sa.String(32), nullable=True, index=True),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("explored", sa.Boolean, nullable=True),
    # Monitoring reads one model's window: index-driven at millions of rows.
    sa.Index("ix_predictions_model_tag_at", "model_tag", "at"),
)

# Outcomes reported for predictions (feedback/). One row per distinct report: the same outcome
# twice is stored once; a changed one is a new row (a correction) and the newest counts. A
# label is known from ``received_at`` on: jobs run --as-of T read only labels received by T.
labels = sa.Table(
    "labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(32), nullable=False, index=True),
    sa.Column("outcome", sa.SmallInteger, nullable=False),  # 1 = defaulted within the window
    sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("corrects", sa.Integer, nullable=True),  # the label row this one replaces
)

# One `creditflow monitor` run: its window, the models it looked at and its overall status.
monitoring_runs = sa.Table(
    "monitoring_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # ok, watch, alert, failed
    sa.Column("report", sa.Text, nullable=True),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
)

# Every value a monitoring run computed: the report, the JSON summary, the alerts and the
# service's /metrics gauges all derive from these rows.
monitoring_results = sa.Table(
    "monitoring_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "run_id",
        sa.Integer,
        sa.ForeignKey("monitoring_runs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),  # fmt: skip
    sa.Column("model_tag", sa.String(128), nullable=True),
    sa.Column("section", sa.String(32), nullable=False),  # drift, quality, skew, latency, ...
    sa.Column("metric", sa.String(64), nullable=False),  # psi, missing_share, p99_s, roc_auc...
    sa.Column("subject", sa.String(128), nullable=False),  # a feature, an endpoint, a vintage
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # ok, watch, alert, info, estimated
    sa.Column("details", sa.JSON, nullable=False),
)

# What the service saw per time window and worker, written off the request path: the history
# Prometheus does not keep, rejected requests included (they never reach the prediction log).
service_stats = sa.Table(
    "service_stats",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("window_s", sa.Float, nullable=False),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),  # 5xx
    sa.Column("rejected", sa.Integer, nullable=False),  # 4xx but 401
    sa.Column("unauthorized", sa.Integer, nullable=False),  # 401
    sa.Column("latency_sum_s", sa.Float, nullable=False),
    # {"le": [bucket upper bounds, s], "counts": [requests per bucket]}: quantiles by merging
    sa.Column("latency_histogram", sa.JSON, nullable=False),
    sa.Column("rejections", sa.JSON, nullable=False),  # {field or rule: requests}
)

# Every `creditflow retrain` run: what it read, both models' figures, the gate's decision and
# why, how long it took and how it ended (retraining/).
retrain_runs = sa.Table(
    "retrain_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    # running, promoted, kept (the champion stays), refused (bad data), failed
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("champion_tag", sa.String(128), nullable=True),
    sa.Column("challenger_tag", sa.String(128), nullable=True),
    sa.Column("inputs", sa.JSON, nullable=False),  # batches and labels since the last run
    sa.Column("rows", sa.JSON, nullable=False),  # row counts: loans, feedback, windows
    sa.Column("metrics", sa.JSON, nullable=False),  # both models on the comparison window
    sa.Column("decision", sa.JSON, nullable=False),  # promoted?, reasons, bootstrap interval
    sa.Column("error", sa.Text, nullable=True),
)
