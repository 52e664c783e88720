"""Training-serving skew (monitoring/skew.py) on the trained demo world.

Predictions are logged as the service would log them, with features built from the offline
store's point-in-time values at the request time: those must not be reported as skew; one
served value altered must be, on its feature alone; and a request made between a bureau row's
event time and the time it was written (served without it, as the online store could only
have) must be reported as late data, not as skew.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pandas as pd
import pytest

from creditflow.applicant_keys import key_cipher
from creditflow.contract import (
    APPLICATION_COLUMNS,
    APPLICATIONS,
    CREATED_TIMESTAMP,
    CREDIT_HISTORY,
    LOANS,
)
from creditflow.db import get_engine
from creditflow.ingestion.offline import read_table
from creditflow.model.registry import load
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.skew import same_value, skew_results
from creditflow.monitoring.window import Window
from creditflow.store.point_in_time import historical_features
from creditflow.tables import predictions

ALTERED = "credit_card_due"
NOT_FEATURES = (*CREDIT_HISTORY.key, CREDIT_HISTORY.timestamp, CREATED_TIMESTAMP)
CREDIT_FEATURES = [c.name for c in CREDIT_HISTORY.columns if c.name not in NOT_FEATURES]


def _served(settings, service: str, names, requests: list[tuple[dict, pd.Timestamp]]) -> list:
    """The features of each (application, time) as the offline store has them at that time,
    as JSON would carry them (None for missing)."""
    entities = pd.DataFrame([{LOANS.key[0]: i, LOANS.timestamp: at, **app}
                             for i, (app, at) in enumerate(requests)])  # fmt: skip
    entities[LOANS.timestamp] = pd.to_datetime(entities[LOANS.timestamp], utc=True)
    frame = historical_features(entities, service, settings)
    rows = frame[list(names)].astype(object)
    return rows.where(rows.notna(), None).to_dict("records")


def _row(tag, app: dict, at: pd.Timestamp, features: dict, cipher, **overrides) -> dict:
    row = {
        "prediction_id": uuid.uuid4().hex, "at": at.to_pydatetime(), "model_tag": tag,
        "entity_hash": "h" * 64, "features": features, "default_probability": 0.1,
        "decision": "approve", "decided_by": "band:approve", "rules_fired": [],
        "application": {c.name: app[c.name] for c in APPLICATION_COLUMNS},
        "entity_keys": cipher.encrypt([app[k] for k in APPLICATIONS.key]),
        "endpoint": "predict",
    }  # fmt: skip
    return {**row, **overrides}


def _plain(record: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}


def test_same_value_rules():
    assert same_value(None, float("nan"), categorical=False)
    assert same_value(None, None, categorical=True)
    assert not same_value(None, 0.0, categorical=False)
    assert same_value(100.0, 100.0 * (1 + th.SKEW_RELATIVE_TOLERANCE / 2), categorical=False)
    assert not same_value(100.0, 100.0 * (1 + th.SKEW_RELATIVE_TOLERANCE * 2), categorical=False)
    assert same_value(5, 5.0, categorical=False)
    assert not same_value("RENT", "rent", categorical=True)


@pytest.fixture()
def logged(demo_home):
    """Rows inserted into the demo home's prediction log, removed afterwards."""
    engine = get_engine(demo_home.settings)
    ids: list[str] = []

    def log(rows: list[dict]) -> None:
        with engine.begin() as conn:
            conn.execute(predictions.insert(), rows)
        ids.extend(r["prediction_id"] for r in rows)

    yield log
    with engine.begin() as conn:
        conn.execute(predictions.delete().where(predictions.c.prediction_id.in_(ids)))


def test_skew_detects_an_altered_value_and_explains_late_data(demo_home, logged):
    settings = demo_home.settings
    tag = demo_home.training["model_tag"]
    model = load(tag)
    service, names = model.contract.service, model.contract.names
    cipher = key_cipher(settings)
    loans = read_table(settings, LOANS).sort_values(LOANS.timestamp, ignore_index=True)
    credit = read_table(settings, CREDIT_HISTORY)
    old = loans[loans[LOANS.timestamp] < loans[LOANS.timestamp].max() - pd.Timedelta(days=60)]
    applications = [_plain(r) for r in old[APPLICATIONS.names].to_dict("records")]

    # Five requests served exactly what the offline store holds at their time.
    matching = [(app, pd.Timestamp(t) + pd.Timedelta(hours=1))
                for app, t in zip(applications[-200::40], old[LOANS.timestamp].iloc[-200::40],
                                  strict=True)]  # fmt: skip
    served = _served(settings, service, names, matching)
    # One more whose served credit-card dues differ from the offline value (it has a value).
    altered_at = pd.Timestamp(old[LOANS.timestamp].iloc[-300]) + pd.Timedelta(hours=1)
    candidates = [(app, altered_at) for app in applications[-300:-250]]
    offline_then = _served(settings, service, names, candidates)
    pick = next(i for i, f in enumerate(offline_then) if f[ALTERED] is not None)
    altered_request, altered = candidates[pick], dict(offline_then[pick])
    altered[ALTERED] = altered[ALTERED] + 1000
    # One made at the event time of an applicant's first bureau row, which was written
    # seconds later: served as the online store had it then (no bureau row yet).
    first = credit.sort_values("event_timestamp").drop_duplicates("dob_ssn")
    first = first[first["dob_ssn"].isin(set(old["dob_ssn"]))
                  & (first["created_timestamp"] > first["event_timestamp"])
                  & (first["event_timestamp"] < loans[LOANS.timestamp].max()
                     - pd.Timedelta(days=60))]  # fmt: skip
    bureau = first.iloc[0]
    late_app = next(a for a in applications if a["dob_ssn"] == bureau["dob_ssn"])
    late_at = pd.Timestamp(bureau["event_timestamp"])
    (before_row,) = _served(settings, service, names, [(late_app, late_at - timedelta(seconds=1))])
    (offline_late,) = _served(settings, service, names, [(late_app, late_at)])
    assert before_row[ALTERED] is None and offline_late[ALTERED] is not None  # it differs

    rows = [_row(tag, app, at, f, cipher) for (app, at), f in zip(matching, served, strict=True)]
    altered_row = _row(tag, *altered_request, altered, cipher)
    late_row = _row(tag, late_app, late_at, before_row, cipher)
    no_keys = _row(tag, applications[0], late_at, before_row, cipher, entity_keys=None,
                   application=None)  # logged before 0002: not rebuildable  # fmt: skip
    bad_token = _row(tag, applications[1], late_at, before_row, cipher, entity_keys="not-a-token")
    logged([*rows, altered_row, late_row, no_keys, bad_token])
    times = [r["at"] for r in (*rows, altered_row, late_row)]
    window = Window(settings, get_engine(settings), tag, start=min(times) - timedelta(seconds=1),
                    as_of=max(times))  # fmt: skip

    results = skew_results(window)

    def result(metric, subject):
        (found,) = [r for r in results if (r.metric, r.subject) == (metric, subject)]
        return found

    sampled = result("sampled", "all")
    assert sampled.details["window_predictions"] == 9 and sampled.details["rebuildable"] == 8
    assert sampled.value == 8 and sampled.details["compared"] == 7
    assert sampled.details["unusable"] == {"entity keys do not decrypt with this home's key": 1}
    assert sampled.details["rows_with_mismatch"] == 1
    assert sampled.details["rows_with_late_mismatch"] == 1
    # The altered feature alone is skewed: 1 of the 6 rows judged (the late row is left out).
    skewed = result("mismatch_rate", ALTERED)
    assert skewed.value == pytest.approx(1 / 6) and skewed.status == th.ALERT
    assert skewed.details["examples"] == [{
        "prediction_id": altered_row["prediction_id"], "at": altered_request[1].isoformat(),
        "served": altered[ALTERED], "offline": altered[ALTERED] - 1000,
    }]  # fmt: skip
    for name in names:
        if name != ALTERED:
            assert result("mismatch_rate", name).value == 0, name
            assert result("mismatch_rate", name).status == th.OK, name
    # The bureau row written after the request explains its mismatches: late, not skew.
    for name in CREDIT_FEATURES:
        late = result("late_mismatch_rate", name)
        assert late.value == pytest.approx(1 / 7) and late.status == th.INFO, name
        assert late.details["examples"][0]["prediction_id"] == late_row["prediction_id"]
    assert result("late_mismatch_rate", "person_income").value == 0
    assert {r.section for r in results} == {"skew"}
    assert all(r.model_tag == tag for r in results)
