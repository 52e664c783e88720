"""Labels joined to the predictions they answer: labeled applications, as training reads loans.

Each current label (received by ``as_of``) becomes one row in the loans entity frame's shape:
the applicant's keys (decrypted from the prediction log), the application as received, the
event time = the prediction's time (the application time, so the point-in-time join finds the
features the model saw) and the label column = the outcome; plus ``prediction_id``,
``decision``, ``label_id`` and ``outcome_at``.

``loan_id`` is minus the label's id: the contract keeps real loan ids at 0 or more, so the two
can never collide, each row keeps a unique key (the point-in-time join requires one), and the
row traces back to its label (and through it to the prediction).

A prediction logged without its application or encrypted keys (before migration 0002), one
whose keys do not decrypt with this home's key, or whose application no longer passes the
contract, is skipped and counted (``frame.attrs["skipped"]``: {reason: rows}).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from creditflow import clock
from creditflow.applicant_keys import InvalidToken, key_cipher
from creditflow.config import Settings
from creditflow.contract import (
    APPLICATION_COLUMNS,
    APPLICATIONS,
    LABEL_COLUMN,
    LOANS,
    violations,
)
from creditflow.feedback.labels import newest_labels_query
from creditflow.tables import predictions

NO_APPLICATION = "logged without its application (before migration 0002)"
NOT_DECRYPTABLE = "entity keys do not decrypt with this home's key"
BROKEN = "application breaks the contract"
# Besides the loans entity frame's columns.
EXTRA_COLUMNS = ["prediction_id", "decision", "label_id", "outcome_at"]
_KINDS = {"int": "int64", "float": "float64", "str": object}


def feedback_loan_id(label_id: int) -> int:
    """A feedback row's loan id: minus its label's id (real loan ids are 0 or more)."""
    return -label_id


def is_feedback(rows: pd.DataFrame) -> pd.Series:
    """Rows that are labelled predictions rather than ingested loans (:func:`feedback_loan_id`)."""
    return rows[LOANS.key[0]] < 0


def labeled_applications(
    settings: Settings, engine: sa.Engine, as_of: datetime | None = None
) -> pd.DataFrame:
    """Every prediction with a label received by ``as_of`` (default now; the newest label
    counts) made by then, as a labeled application; sorted by event time."""
    as_of = clock.now() if as_of is None else clock.as_utc(as_of)
    current = newest_labels_query(as_of).subquery()
    query = (
        sa.select(
            current.c.id,
            current.c.outcome,
            current.c.outcome_at,
            predictions.c.prediction_id,
            predictions.c.at,
            predictions.c.decision,
            predictions.c.application,
            predictions.c.entity_keys,
        )  # fmt: skip
        .join(predictions, predictions.c.prediction_id == current.c.prediction_id)
        .where(predictions.c.at <= as_of)
        .order_by(predictions.c.at, current.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    skipped = {NO_APPLICATION: 0, NOT_DECRYPTABLE: 0, BROKEN: 0}
    cipher = key_cipher(settings)
    records = []
    for row in rows:
        if row.application is None or row.entity_keys is None:
            skipped[NO_APPLICATION] += 1
            continue
        try:
            keys = cipher.decrypt(row.entity_keys)
        except InvalidToken:
            skipped[NOT_DECRYPTABLE] += 1
            continue
        records.append({
            LOANS.key[0]: feedback_loan_id(row.id), **keys,
            **{c.name: row.application.get(c.name) for c in APPLICATION_COLUMNS},
            LABEL_COLUMN: row.outcome, LOANS.timestamp: row.at,
            "prediction_id": row.prediction_id, "decision": row.decision, "label_id": row.id,
            "outcome_at": row.outcome_at,
        })  # fmt: skip
    frame = _typed(pd.DataFrame.from_records(records, columns=_columns()))
    broken = violations(frame, APPLICATIONS) != ""
    skipped[BROKEN] = int(broken.sum())
    frame = frame[~broken.to_numpy()].reset_index(drop=True)
    frame.attrs["skipped"] = {reason: n for reason, n in skipped.items() if n}
    return frame


def _columns() -> list[str]:
    return [LOANS.key[0], *APPLICATIONS.key, *(c.name for c in APPLICATION_COLUMNS),
            LABEL_COLUMN, LOANS.timestamp, *EXTRA_COLUMNS]  # fmt: skip


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The loans table's dtypes (int64, float64, object, UTC timestamps)."""
    for col in (*APPLICATIONS.columns, LOANS.column(LABEL_COLUMN)):
        if col.kind in ("int", "float") and frame[col.name].isna().any():
            continue  # a missing number: the contract check below names it
        frame[col.name] = frame[col.name].astype(_KINDS[col.kind])
    for name in (LOANS.key[0], "label_id"):
        frame[name] = frame[name].astype("int64")
    for name in (LOANS.timestamp, "outcome_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame
