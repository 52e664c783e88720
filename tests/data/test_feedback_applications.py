"""Labels joined to their predictions become labeled applications: decrypted keys, the
application as received, the prediction's time as event time; `as_of` respected; rows that
cannot be used skipped and counted; duplicates of ingested loans left to the loans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from creditflow.contract import EXAMPLE_APPLICATION, LABEL_COLUMN, LOANS
from creditflow.feedback.labeled_applications import (
    NO_APPLICATION,
    NOT_DECRYPTABLE,
    labeled_applications,
)
from creditflow.feedback.labels import record_label
from creditflow.feedback.logged_predictions import prediction_row, write_predictions
from creditflow.migrate import upgrade_engine
from creditflow.training.dataset import entity_frame, entity_frame_columns, feedback_rows

AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
DAY = timedelta(days=1)
OTHER = {**EXAMPLE_APPLICATION, "dob_ssn": "19751231_0042", "zipcode": 90210,
         "person_income": 81000, "loan_intent": "MEDICAL"}  # fmt: skip


@pytest.fixture()
def db(sql_engine):
    upgrade_engine(sql_engine)
    return sql_engine


def test_labeled_applications(db, home):
    rows = [
        prediction_row(home, EXAMPLE_APPLICATION, AT, decision="approve"),
        prediction_row(home, OTHER, AT + DAY, decision="review"),
        prediction_row(home, OTHER, AT + 2 * DAY),  # never labeled
        prediction_row(home, OTHER, AT + 3 * DAY),  # labeled after as_of
        prediction_row(home, OTHER, AT + 4 * DAY),  # logged before migration 0002
        prediction_row(home, OTHER, AT + 5 * DAY),  # keys encrypted with another key
    ]
    rows[4].update(application=None, entity_keys=None)
    rows[5]["entity_keys"] = rows[5]["entity_keys"][:-8] + "AAAAAAAA"
    ids = write_predictions(db, rows)
    as_of = AT + 100 * DAY
    first = record_label(db, ids[0], 1, AT + 50 * DAY, received_at=AT + 50 * DAY)
    record_label(db, ids[1], 1, AT + 60 * DAY, received_at=AT + 60 * DAY)
    fixed = record_label(db, ids[1], 0, AT + 61 * DAY, received_at=AT + 61 * DAY)
    record_label(db, ids[3], 1, AT + 90 * DAY, received_at=as_of + DAY)
    record_label(db, ids[4], 1, AT + 90 * DAY, received_at=AT + 90 * DAY)
    record_label(db, ids[5], 1, AT + 90 * DAY, received_at=AT + 90 * DAY)

    frame = labeled_applications(home, db, as_of)

    assert frame.attrs["skipped"] == {NO_APPLICATION: 1, NOT_DECRYPTABLE: 1}
    assert list(frame["prediction_id"]) == ids[:2]
    assert set(entity_frame_columns()) <= set(frame.columns)
    one, two = frame.to_dict("records")
    for row, application in ((one, EXAMPLE_APPLICATION), (two, OTHER)):
        assert {k: row[k] for k in application} == application  # keys decrypted, as received
    assert one[LOANS.timestamp] == pd.Timestamp(AT)  # the application time, to the microsecond
    assert (one[LABEL_COLUMN], one["decision"], one["loan_id"]) == (1, "approve", -first.label_id)
    assert (two[LABEL_COLUMN], two["label_id"]) == (0, fixed.label_id)  # the correction counts
    assert frame["loan_id"].lt(0).all()  # never a real loan id (those are >= 0)
    # The loans table's dtypes, so both concatenate into one entity frame for Feast.
    assert entity_frame(frame).dtypes.astype(str).to_dict() == {
        "loan_id": "int64", "dob_ssn": "object", "zipcode": "int64", "event_timestamp":
        "datetime64[ns, UTC]", "person_age": "int64", "person_income": "int64",
        "person_home_ownership": "object", "person_emp_length": "float64",
        "loan_intent": "object", "loan_amnt": "int64", "loan_int_rate": "float64",
        "loan_status": "int64",
    }  # fmt: skip
    assert len(labeled_applications(home, db, AT + 55 * DAY)) == 1  # as of: one label known


def test_no_labels_no_rows(db, home):
    write_predictions(db, [prediction_row(home, EXAMPLE_APPLICATION, AT)])
    frame = labeled_applications(home, db, AT + DAY)
    assert frame.empty and set(entity_frame_columns()) <= set(frame.columns)


def test_feedback_rows_leave_ingested_loans_to_the_loans(home, monkeypatch):
    """The same applicant, application and time as an ingested loan: the loan row is kept."""
    monkeypatch.setenv("CREDITFLOW_HOME", str(home.home))
    from creditflow.db import get_engine

    engine = get_engine(home)
    ids = write_predictions(engine, [
        prediction_row(home, EXAMPLE_APPLICATION, AT, decision="approve"),  # a loan already
        prediction_row(home, EXAMPLE_APPLICATION, AT + DAY, decision="approve"),  # later: new
        prediction_row(home, OTHER, AT, decision="decline"),  # another applicant: new
    ])  # fmt: skip
    for prediction_id in ids:
        record_label(engine, prediction_id, 0, AT + 30 * DAY, received_at=AT + 30 * DAY)
    loan = {**EXAMPLE_APPLICATION, LOANS.key[0]: 7, LABEL_COLUMN: 1,
            LOANS.timestamp: pd.Timestamp(AT).as_unit("ns")}  # fmt: skip
    loans = pd.DataFrame([loan])

    used, counts = feedback_rows(home, loans, as_of=AT + 40 * DAY)

    assert sorted(used["prediction_id"]) == sorted(ids[1:])
    assert counts["rows"] == 2 and counts["duplicates_of_loans"] == 1
    assert counts["by_decision"] == {"approve": 1, "review": 0, "decline": 1}
    changed = loans.assign(person_income=loans["person_income"] + 1)  # another application
    assert feedback_rows(home, changed, as_of=AT + 40 * DAY)[1]["duplicates_of_loans"] == 0
