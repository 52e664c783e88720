"""Labels one at a time (what `POST /feedback` calls): every refusal, idempotence, corrections
with their history, `as_of`, concurrent identical reports, durability. SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from creditflow import clock
from creditflow.contract import EXAMPLE_APPLICATION
from creditflow.feedback.labels import (
    InvalidLabel,
    UnknownPrediction,
    current_labels,
    label_history,
    record_label,
)
from creditflow.feedback.logged_predictions import prediction_row, write_predictions
from creditflow.migrate import upgrade_engine
from creditflow.tables import labels

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = AT + timedelta(days=200)


@pytest.fixture()
def db(sql_engine):
    upgrade_engine(sql_engine)
    return sql_engine


@pytest.fixture()
def prediction(db, home) -> str:
    return write_predictions(db, [prediction_row(home, EXAMPLE_APPLICATION, AT)])[0]


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).select_from(labels))


def test_first_label_then_duplicate_then_correction_keeps_history(db, prediction):
    first = record_label(db, prediction, 1, LATER, source="servicing")
    assert (first.status, first.corrects, first.source) == ("stored", None, "servicing")
    again = record_label(db, prediction, 1, LATER, source="another system")
    assert again.status == "duplicate" and again.label_id == first.label_id
    assert _count(db) == 1  # the same label twice is stored once

    fixed = record_label(db, prediction, 0, LATER)
    assert (fixed.status, fixed.corrects) == ("correction", first.label_id)
    back = record_label(db, prediction, 1, LATER)  # back to the first answer: a new row
    assert (back.status, back.corrects) == ("correction", fixed.label_id)
    moved = record_label(db, prediction, 1, LATER + timedelta(days=1))  # only the time differs
    assert (moved.status, moved.corrects) == ("correction", back.label_id)

    history = label_history(db, prediction)
    assert [h["outcome"] for h in history] == [1, 0, 1, 1]  # never overwritten
    assert [h["corrects"] for h in history] == [None, first.label_id, fixed.label_id,
                                                back.label_id]  # fmt: skip
    current = current_labels(db)
    assert len(current) == 1  # the newest counts
    assert current.iloc[0]["id"] == moved.label_id
    assert current.iloc[0]["outcome_at"] == LATER + timedelta(days=1)


def test_unknown_prediction(db, prediction):
    with pytest.raises(UnknownPrediction) as err:
        record_label(db, uuid.uuid4().hex, 1, LATER)
    assert "no prediction" in str(err.value)
    assert _count(db) == 0


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("outcome", {"outcome": 2}),
        ("outcome", {"outcome": -1}),
        ("outcome", {"outcome": True}),  # a boolean is not 1
        ("outcome", {"outcome": "1"}),
        ("outcome_at", {"outcome_at": AT - timedelta(seconds=1)}),  # before the prediction
        ("outcome_at", {"outcome_at": datetime.now(UTC) + timedelta(hours=1)}),  # future
        ("outcome_at", {"outcome_at": "2026-09-01"}),  # not a datetime
        ("source", {"source": ""}),
        ("source", {"source": "x" * 129}),
        ("source", {"source": "line\nbreak"}),
        ("prediction_id", {"prediction_id": "not-an-id"}),
    ],
)
def test_each_invalid_field_is_named_and_nothing_is_written(db, prediction, field, changes):
    report = {"prediction_id": prediction, "outcome": 1, "outcome_at": LATER, **changes}
    with pytest.raises(InvalidLabel) as err:
        record_label(db, **report)
    assert err.value.field == field
    assert _count(db) == 0


def test_future_tolerance_is_relative_to_receipt(db, prediction):
    received = AT + timedelta(days=30)
    ok = record_label(db, prediction, 1, received + timedelta(minutes=4), received_at=received)
    assert ok.status == "stored"
    with pytest.raises(InvalidLabel, match="future"):
        record_label(db, prediction, 1, received + timedelta(minutes=6), received_at=received)


def test_a_naive_time_is_utc(db, prediction):
    receipt = record_label(db, prediction, 0, LATER.replace(tzinfo=None))
    assert receipt.outcome_at == LATER
    assert record_label(db, prediction, 0, LATER).status == "duplicate"


def test_as_of_ignores_labels_received_later(db, home):
    rows = [prediction_row(home, EXAMPLE_APPLICATION, AT) for _ in range(2)]
    first, second = write_predictions(db, rows)
    day = AT + timedelta(days=100)
    record_label(db, first, 1, day, received_at=day)
    record_label(db, first, 0, day, received_at=day + timedelta(days=10))  # a correction
    record_label(db, second, 1, day, received_at=day + timedelta(days=20))

    early = current_labels(db, day + timedelta(days=1))
    assert early[["prediction_id", "outcome"]].values.tolist() == [[first, 1]]
    middle = current_labels(db, day + timedelta(days=15))
    assert middle[["prediction_id", "outcome"]].values.tolist() == [[first, 0]]
    assert len(current_labels(db, day + timedelta(days=30))) == 2
    with clock.frozen(day + timedelta(days=15)):  # the default as_of is the clock's now
        assert len(current_labels(db)) == 1


def test_concurrent_identical_reports_store_one_row(db, prediction):
    errors: list[BaseException] = []
    receipts = []
    start = threading.Barrier(6)

    def report() -> None:
        try:
            start.wait()
            receipts.append(record_label(db, prediction, 1, LATER).status)
        except BaseException as err:  # noqa: BLE001 - surfaced below
            errors.append(err)

    threads = [threading.Thread(target=report) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(receipts) == ["duplicate"] * 5 + ["stored"]
    assert _count(db) == 1


def test_an_acknowledged_label_survives_a_restart(db, prediction):
    receipt = record_label(db, prediction, 1, LATER)
    url = db.url
    db.dispose()  # the process's connections are gone
    fresh = sa.create_engine(url)
    try:
        assert [h["id"] for h in label_history(fresh, prediction)] == [receipt.label_id]
    finally:
        fresh.dispose()
