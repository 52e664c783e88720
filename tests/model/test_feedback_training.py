"""Outcomes flow into the next training set with no manual step: each labeled prediction is a
row at its original application time, with the features as of then (not the newer ones), and
a prediction that repeats an ingested loan is left to the loan."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import sqlalchemy as sa

from creditflow.contract import APPLICATIONS, CREDIT_HISTORY, LABEL_COLUMN, LOANS
from creditflow.db import get_engine
from creditflow.feedback.labels import record_label
from creditflow.feedback.logged_predictions import prediction_row, write_predictions
from creditflow.ingestion.offline import read_table
from creditflow.tables import labels, predictions
from creditflow.training.dataset import build_training_set


def _applications_between_snapshots(settings, count: int) -> pd.DataFrame:
    """Loans of applicants whose bureau snapshot changed later, each re-timed an hour after
    an earlier snapshot: the features as of then differ from the newest ones."""
    history = read_table(settings, CREDIT_HISTORY).sort_values(CREDIT_HISTORY.timestamp)
    history["next_due"] = history.groupby("dob_ssn")["credit_card_due"].shift(-1)
    history["next_at"] = history.groupby("dob_ssn")[CREDIT_HISTORY.timestamp].shift(-1)
    changed = history[history["next_due"].notna()
                      & (history["next_due"] != history["credit_card_due"])
                      & (history["next_at"] - history[CREDIT_HISTORY.timestamp]
                         > timedelta(hours=2))]  # fmt: skip
    loans = read_table(settings, LOANS).drop_duplicates("dob_ssn")
    picked = changed.drop_duplicates("dob_ssn").merge(loans, on="dob_ssn", suffixes=("_h", ""))
    picked = picked.head(count).copy()
    picked["at"] = pd.to_datetime(picked[f"{CREDIT_HISTORY.timestamp}_h"], utc=True)
    picked["at"] += timedelta(hours=1)
    picked["expected_due"] = picked["credit_card_due"]
    return picked


def test_labels_become_training_rows_as_of_their_application_time(demo_home):
    settings = demo_home.settings
    engine = get_engine(settings)
    service = demo_home.training["feature_service"]
    before = build_training_set(service, settings)  # whatever other tests left in the log
    picked = _applications_between_snapshots(settings, 6)
    assert len(picked) == 6
    names = APPLICATIONS.names
    decisions = ["approve", "approve", "approve", "review", "decline", "approve"]
    rows = [prediction_row(settings, {k: _plain(r[k]) for k in names}, r["at"], decision=d)
            for r, d in zip(picked.to_dict("records"), decisions, strict=True)]  # fmt: skip
    # One more: exactly an ingested loan (application and time), which training has already.
    loan = read_table(settings, LOANS).iloc[0]
    rows.append(prediction_row(settings, {k: _plain(loan[k]) for k in names},
                               loan[LOANS.timestamp].to_pydatetime()))  # fmt: skip
    ids = write_predictions(engine, rows)
    try:
        outcomes = {}
        for i, (prediction_id, row) in enumerate(zip(ids, rows, strict=True)):
            outcomes[prediction_id] = i % 2
            record_label(engine, prediction_id, i % 2, row["at"] + timedelta(minutes=30))

        data = build_training_set(service, settings)

        assert len(data.frame) == len(before.frame) + 6
        assert data.feedback["rows"] == before.feedback["rows"] + 6
        assert data.feedback["duplicates_of_loans"] == before.feedback["duplicates_of_loans"] + 1
        added = {d: n - before.feedback["by_decision"].get(d, 0)
                 for d, n in data.feedback["by_decision"].items()}  # fmt: skip
        assert added == {"approve": 4, "review": 1, "decline": 1}
        feedback = data.frame[data.frame[LOANS.key[0]] < 0].set_index(LOANS.key[0])
        with engine.connect() as conn:
            mine = labels.c.prediction_id.in_(ids)
            label_of = dict(
                conn.execute(sa.select(labels.c.prediction_id, labels.c.id).where(mine)).all()
            )
        for prediction_id, expected in zip(ids[:6], picked.to_dict("records"), strict=True):
            row = feedback.loc[-label_of[prediction_id]]
            assert row[LOANS.timestamp] == expected["at"]  # the original application time
            assert row[LABEL_COLUMN] == outcomes[prediction_id]
            assert row["credit_card_due"] == expected["expected_due"]  # as of then
            assert row["credit_card_due"] != expected["next_due"]  # not the newer snapshot
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(labels).where(labels.c.prediction_id.in_(ids)))
            conn.execute(sa.delete(predictions).where(predictions.c.prediction_id.in_(ids)))


def _plain(value):
    """A numpy scalar as the Python value a JSON request carries."""
    return value.item() if hasattr(value, "item") else value
