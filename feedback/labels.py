"""Outcomes of past predictions, recorded one at a time (``POST /feedback``) and read back.

A label is a row of our ``labels`` table, never updated: the same report twice is stored once,
a changed one is a new row that ``corrects`` the row it replaces, and the newest counts. Each
call is one transaction that first locks the prediction's row (PostgreSQL ``SELECT ... FOR
UPDATE``; SQLite: a write to it, which takes the database's write lock), so two concurrent
identical reports cannot both be stored and a correction always names the row it replaces.
The write is committed before :func:`record_label` returns: an acknowledged label survives a
restart. Values are checked against the contract's ``LABELS`` columns.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa

from creditflow import clock
from creditflow.config import get_settings
from creditflow.contract import LABELS, Col
from creditflow.tables import labels, predictions

__all__ = [
    "InvalidLabel",
    "LabelError",
    "LabelReceipt",
    "UnknownPrediction",
    "current_labels",
    "label_history",
    "newest_labels_query",
    "record_label",
]

Status = Literal["stored", "correction", "duplicate"]


class LabelError(ValueError):
    """A label that was not recorded (nothing was written)."""


class UnknownPrediction(LabelError):
    """No logged prediction has this id (the HTTP layer answers 404)."""

    def __init__(self, prediction_id: str) -> None:
        super().__init__(f"no prediction with prediction_id {prediction_id!r}")
        self.prediction_id = prediction_id


class InvalidLabel(LabelError):
    """A field's value breaks a rule (the HTTP layer answers 422 naming ``field``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LabelReceipt:
    """What happened to a report: ``stored`` (the first label of its prediction),
    ``correction`` (stored, replacing label ``corrects``) or ``duplicate`` (the current label
    already says this: nothing written, ``label_id`` is that label's)."""

    label_id: int
    prediction_id: str
    status: Status
    outcome: int
    outcome_at: datetime
    source: str
    received_at: datetime
    corrects: int | None = None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("outcome_at", "received_at"):
            values[name] = values[name].isoformat()
        return values


def _broken_rule(col: Col, value: object) -> str | None:
    """The contract rule ``value`` breaks, worded as the batch validation words it."""
    if value is None:
        return None if col.nullable else f"{col.name} is null"
    if col.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{col.name} must be an integer, not {type(value).__name__}"
    if col.kind == "str" and not isinstance(value, str):
        return f"{col.name} must be a string, not {type(value).__name__}"
    if col.ge is not None and value < col.ge:
        return f"{col.name} >= {col.ge:g}"
    if col.le is not None and value > col.le:
        return f"{col.name} <= {col.le:g}"
    if col.pattern and not re.search(col.pattern, value):
        return f"{col.name} matches {col.pattern}"
    return None


def _check_fields(prediction_id: object, outcome: object, source: object) -> None:
    if rule := _broken_rule(LABELS.column("prediction_id"), prediction_id):
        raise InvalidLabel("prediction_id", rule)
    if rule := _broken_rule(LABELS.column("outcome"), outcome):
        raise InvalidLabel("outcome", f"{rule} (1 = defaulted, 0 = did not)")
    if rule := _broken_rule(LABELS.column("source"), source):
        raise InvalidLabel("source", f"{rule} (1 to 128 printable characters)")


def _utc(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidLabel(field, f"{field} must be a datetime, not {type(value).__name__}")
    return clock.as_utc(value)


def _lock_prediction(conn: sa.Connection, prediction_id: str) -> datetime | None:
    """The prediction's time, its row locked until the transaction ends (None: unknown)."""
    if conn.dialect.name == "sqlite":
        # pysqlite opens the transaction at the first write: a write that changes nothing
        # takes SQLite's write lock now, before reading, so a concurrent call waits here.
        conn.execute(
            sa.update(predictions)
            .where(predictions.c.prediction_id == prediction_id)
            .values(prediction_id=predictions.c.prediction_id)
        )
        query = sa.select(predictions.c.at)
    else:
        # Waits for a bulk import in progress (it holds a stricter lock on labels), so the
        # newest label read below is still the newest when this one is inserted.
        conn.exec_driver_sql("LOCK TABLE labels IN ROW EXCLUSIVE MODE")
        query = sa.select(predictions.c.at).with_for_update()
    at = conn.execute(query.where(predictions.c.prediction_id == prediction_id)).scalar()
    return None if at is None else clock.as_utc(at)


def _newest(conn: sa.Connection, prediction_id: str) -> sa.Row | None:
    return conn.execute(
        sa.select(labels)
        .where(labels.c.prediction_id == prediction_id)
        .order_by(labels.c.received_at.desc(), labels.c.id.desc())
        .limit(1)
    ).first()


def record_label(
    engine: sa.Engine,
    prediction_id: str,
    outcome: int,
    outcome_at: datetime,
    source: str = "api",
    received_at: datetime | None = None,
    *,
    future_tolerance: timedelta | None = None,
) -> LabelReceipt:
    """Record an outcome for a logged prediction; committed when this returns.

    Raises :class:`UnknownPrediction` for an id the log does not have and
    :class:`InvalidLabel` (naming the field) for an outcome other than 0/1, an ``outcome_at``
    before the prediction or later than ``received_at`` plus the future tolerance (default:
    ``CREDITFLOW_FUTURE_TOLERANCE_MINUTES``), an empty or oversized ``source`` (None: "api").
    A naive time
    is UTC. The newest label is the one received last: a ``received_at`` before the current
    label's (clocks of two replicas) is recorded as the current label's.
    """
    source = "api" if source is None else source
    _check_fields(prediction_id, outcome, source)
    outcome_at = _utc(outcome_at, "outcome_at")
    received_at = clock.now() if received_at is None else _utc(received_at, "received_at")
    if future_tolerance is None:
        future_tolerance = timedelta(minutes=get_settings().future_tolerance_minutes)
    if outcome_at > received_at + future_tolerance:
        raise InvalidLabel(
            "outcome_at",
            f"outcome_at {outcome_at.isoformat()} is in the future (received "
            f"{received_at.isoformat()})",
        )
    with engine.begin() as conn:
        at = _lock_prediction(conn, prediction_id)
        if at is None:
            raise UnknownPrediction(prediction_id)
        if outcome_at < at:
            raise InvalidLabel(
                "outcome_at",
                f"outcome_at {outcome_at.isoformat()} is before the prediction ({at.isoformat()})",
            )
        current = _newest(conn, prediction_id)
        if current is not None:
            if current.outcome == outcome and clock.as_utc(current.outcome_at) == outcome_at:
                return LabelReceipt(
                    current.id, prediction_id, "duplicate", outcome, outcome_at,
                    current.source, clock.as_utc(current.received_at), current.corrects,
                )  # fmt: skip
            received_at = max(received_at, clock.as_utc(current.received_at))
        row = {
            "prediction_id": prediction_id,
            "outcome": outcome,
            "outcome_at": outcome_at,
            "source": source,
            "received_at": received_at,
            "corrects": None if current is None else current.id,
        }
        label_id = conn.execute(sa.insert(labels).values(row).returning(labels.c.id)).scalar_one()
    status: Status = "stored" if current is None else "correction"
    return LabelReceipt(label_id=label_id, status=status, **row)


def _row(row: sa.Row) -> dict[str, Any]:
    values = row._asdict()
    for name in ("outcome_at", "received_at"):
        values[name] = clock.as_utc(values[name])
    return values


def label_history(engine: sa.Engine, prediction_id: str) -> list[dict[str, Any]]:
    """Every label of a prediction, oldest first; the last one counts."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(labels)
            .where(labels.c.prediction_id == prediction_id)
            .order_by(labels.c.received_at, labels.c.id)
        ).all()
    return [_row(row) for row in rows]


LABEL_FRAME_COLUMNS = [c.name for c in labels.columns]


def newest_labels_query(as_of: datetime) -> sa.Select:
    """The label that counts for each prediction as of ``as_of``: the newest (received last;
    ties: the later row) among those received by then."""
    ranked = sa.select(
        labels,
        sa.func.row_number()
        .over(
            partition_by=labels.c.prediction_id,
            order_by=(labels.c.received_at.desc(), labels.c.id.desc()),
        )
        .label("rank"),
    ).where(labels.c.received_at <= as_of)
    ranked = ranked.subquery()
    return sa.select(*(ranked.c[name] for name in LABEL_FRAME_COLUMNS)).where(ranked.c.rank == 1)


def current_labels(engine: sa.Engine, as_of: datetime | None = None) -> pd.DataFrame:
    """The label that counts for each prediction as of ``as_of`` (default now): the newest
    among those received by then. Columns: the ``labels`` table's; times UTC; by id."""
    as_of = clock.as_utc(as_of) if as_of is not None else clock.now()
    with engine.connect() as conn:
        rows = conn.execute(newest_labels_query(as_of)).all()
    frame = pd.DataFrame(rows, columns=LABEL_FRAME_COLUMNS)
    for name in ("outcome_at", "received_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    frame["outcome"] = frame["outcome"].astype("int64")
    frame["corrects"] = frame["corrects"].astype("Int64")
    return frame.sort_values("id", ignore_index=True)
