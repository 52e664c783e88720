"""`creditflow forget`: an applicant gone from every one of our tables (whatever zipcodes they
applied from, rows logged before the keys were encrypted included), nobody else touched; the
raw key never stored; retention deletes old predictions and labels. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from creditflow.applicant_keys import home_entity_hasher
from creditflow.contract import EXAMPLE_APPLICATION
from creditflow.feedback.erasure import expire, forget
from creditflow.feedback.importer import import_labels
from creditflow.feedback.labels import record_label
from creditflow.feedback.logged_predictions import prediction_row, write_predictions
from creditflow.migrate import upgrade_engine
from creditflow.tables import labels, metadata, predictions, quarantine

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ME = EXAMPLE_APPLICATION["dob_ssn"]
SOMEONE = {**EXAMPLE_APPLICATION, "dob_ssn": "19751231_0042", "zipcode": 90210}


@pytest.fixture()
def db(sql_engine):
    upgrade_engine(sql_engine)
    return sql_engine


def _everything(engine) -> str:
    """Every value of every row of every one of our tables, as text."""
    with engine.connect() as conn:
        rows = [dict(r) for table in metadata.sorted_tables
                for r in conn.execute(sa.select(table)).mappings()]  # fmt: skip
    return json.dumps(rows, default=str)


def _world(db, home, tmp_path) -> dict:
    """Me from two zipcodes (one row logged before 0002: hash only), someone else; labels for
    all; a rejected label of mine and an ingestion reject naming me, in quarantine."""
    mine = [
        prediction_row(home, EXAMPLE_APPLICATION, AT),
        prediction_row(home, {**EXAMPLE_APPLICATION, "zipcode": 10001}, AT + DAY),
        prediction_row(home, {**EXAMPLE_APPLICATION, "zipcode": 60601}, AT + 2 * DAY),
    ]
    mine[2].update(application=None, entity_keys=None)  # only the keyed hash to find it by
    mine_ids = write_predictions(db, mine)
    theirs_ids = write_predictions(db, [prediction_row(home, SOMEONE, AT)])
    for prediction_id in mine_ids + theirs_ids:
        record_label(db, prediction_id, 1, AT + 30 * DAY)
    record_label(db, mine_ids[0], 0, AT + 31 * DAY)  # a correction: two rows
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "prediction_id,outcome,outcome_at\n"
        f"{mine_ids[1]},7,2026-05-01T00:00:00Z\n{theirs_ids[0]},7,2026-05-01T00:00:00Z\n"
    )
    assert import_labels(bad, home, engine=db)["rejected"] == 2
    loan = {"loan_id": 1, **EXAMPLE_APPLICATION, "person_age": 300}  # as ingestion keeps it
    with db.begin() as conn:
        conn.execute(sa.insert(quarantine), [
            {"table_name": "loans", "batch_id": "b", "row_number": 0, "reasons": "age",
             "payload": json.dumps(loan), "quarantined_at": AT},
            {"table_name": "credit_history", "batch_id": "c", "row_number": 3,
             "reasons": "unparseable CSV line", "payload": f"{ME},12,x", "quarantined_at": AT},
            {"table_name": "loans", "batch_id": "b", "row_number": 1, "reasons": "age",
             "payload": json.dumps({**loan, **SOMEONE}), "quarantined_at": AT},
        ])  # fmt: skip
    return {"mine": mine_ids, "theirs": theirs_ids}


def test_forget_removes_an_applicant_everywhere(db, home, tmp_path):
    world = _world(db, home, tmp_path)
    before = _everything(db)
    assert ME in before  # the ingestion rejects name me, as received

    summary = forget(home, db, ME)

    assert summary["removed"] == {"predictions": 3, "labels": 4, "quarantine": 3}
    after = _everything(db)
    assert ME not in after
    hashes = {home_entity_hasher(home)(ME, z) for z in (2110, 10001, 60601)}
    assert not any(h in after for h in hashes)
    assert not any(prediction_id in after for prediction_id in world["mine"])
    # Nobody else's rows were touched.
    assert world["theirs"][0] in after and SOMEONE["dob_ssn"] in after
    with db.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(predictions)) == 1
        assert conn.scalar(sa.select(sa.func.count()).select_from(labels)) == 1
        assert conn.scalar(sa.select(sa.func.count()).select_from(quarantine)) == 2
    assert forget(home, db, ME)["rows"] == 0  # nothing left to remove


def test_forget_refuses_a_malformed_key(db, home):
    with pytest.raises(ValueError, match="dob_ssn"):
        forget(home, db, "1980-01-01")
    with pytest.raises(ValueError, match="dob_ssn"):
        forget(home, db, "%")  # never a LIKE wildcard that matches everyone


def test_the_raw_key_is_stored_in_none_of_the_feedback_tables(db, home, tmp_path):
    _world(db, home, tmp_path)
    with db.connect() as conn:
        text = json.dumps([[dict(r) for r in conn.execute(sa.select(t)).mappings()]
                           for t in metadata.sorted_tables if t.name != "quarantine"],
                          default=str)  # fmt: skip
    assert ME not in text and SOMEONE["dob_ssn"] not in text


def test_expire_applies_the_retention_period(db, home):
    now = AT + 1000 * DAY
    settings = home.model_copy(update={"retention_days": 365})
    old, recent = write_predictions(db, [
        prediction_row(home, EXAMPLE_APPLICATION, now - 400 * DAY),
        prediction_row(home, EXAMPLE_APPLICATION, now - 100 * DAY),
    ])  # fmt: skip
    record_label(db, old, 1, now - 300 * DAY, received_at=now - 300 * DAY)  # prediction expires
    record_label(db, recent, 1, now - 50 * DAY, received_at=now - 50 * DAY)

    summary = expire(settings, db, now)

    assert summary["removed"] == {"predictions": 1, "labels": 1}
    assert pd.Timestamp(summary["cutoff"]) == pd.Timestamp(now - 365 * DAY)
    with db.connect() as conn:
        assert conn.scalars(sa.select(predictions.c.prediction_id)).all() == [recent]
        assert conn.scalars(sa.select(labels.c.prediction_id)).all() == [recent]
