"""What drift and quality read: the logged predictions of a window (in bulk, typed by the
model's contract, nothing after as_of) and the service's contract rejections; on SQLite and
PostgreSQL."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from creditflow.migrate import upgrade_engine
from creditflow.monitoring import logged
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.logged import models_that_served, read_logged
from creditflow.monitoring.quality import rejection_results
from creditflow.store.features import FeatureContract
from creditflow.tables import predictions, service_stats

CONTRACT = FeatureContract(
    "svc", ("person_income", "loan_intent", "hard_pulls"), ("loan_intent",),
    ("Int64", "String", "Float64"),
)  # fmt: skip
AS_OF = datetime(2030, 1, 8, tzinfo=UTC)
START = AS_OF - timedelta(days=7)
MODEL, OTHER_MODEL = "credit_risk:a", "credit_risk:b"


def _row(n: int, at: datetime, model: str = MODEL, **features) -> dict:
    values = {"person_income": 50_000 + n, "loan_intent": "EDUCATION", "hard_pulls": None}
    values.update(features)
    application = {"person_income": values["person_income"], "loan_intent": "EDUCATION",
                   "person_age": 40}  # fmt: skip
    return {
        "prediction_id": f"p{n:04d}", "at": at, "model_tag": model, "entity_hash": "h" * 64,
        "features": values, "default_probability": n / 100, "decision": "approve",
        "decided_by": "band:approve", "rules_fired": [],
        "application": application if n % 2 else None,
    }  # fmt: skip


@pytest.fixture()
def engine(sql_engine):
    upgrade_engine(sql_engine)
    return sql_engine


def _insert(engine, rows) -> None:
    with engine.begin() as conn:
        conn.execute(predictions.insert(), rows)


def test_reads_the_models_rows_of_the_window_and_nothing_after_as_of(engine):
    rows = [
        _row(1, START),  # the start is excluded
        _row(2, START + timedelta(seconds=1), hard_pulls=3.0),
        _row(3, AS_OF - timedelta(days=1), loan_intent="MEDICAL"),
        _row(4, AS_OF),  # as_of is included
        _row(5, AS_OF + timedelta(microseconds=1)),  # later than as_of: never read
        _row(6, AS_OF - timedelta(hours=1), model=OTHER_MODEL),
    ]
    _insert(engine, rows)
    frame = read_logged(engine, MODEL, START, AS_OF, CONTRACT)
    assert frame["default_probability"].tolist() == [0.02, 0.03, 0.04]
    assert frame["at"].tolist() == [START + timedelta(seconds=1), AS_OF - timedelta(days=1), AS_OF]
    assert frame["person_income"].tolist() == [50_002.0, 50_003.0, 50_004.0]
    assert frame["person_income"].dtype == np.float64
    assert isinstance(frame["loan_intent"].dtype, pd.CategoricalDtype)
    assert frame["loan_intent"].tolist() == ["EDUCATION", "MEDICAL", "EDUCATION"]
    assert frame["hard_pulls"].isna().tolist() == [False, True, True]  # None: missing
    assert frame["decision"].tolist() == ["approve"] * 3
    # The past as it was: a run as of an earlier time sees only what was logged by then.
    earlier = read_logged(engine, MODEL, START, AS_OF - timedelta(hours=12), CONTRACT)
    assert earlier["default_probability"].tolist() == [0.02, 0.03]
    assert models_that_served(engine, START, AS_OF) == [MODEL, OTHER_MODEL]
    assert read_logged(engine, "credit_risk:none", START, AS_OF, CONTRACT).empty


def test_slices_read_together_give_the_same_frame(engine, monkeypatch):
    base = START + timedelta(hours=1)
    intents = ["EDUCATION", "MEDICAL", "VENTURE"]
    _insert(engine, [_row(n, base + timedelta(minutes=7 * n), loan_intent=intents[n % 3])
                     for n in range(60)])  # fmt: skip
    whole = read_logged(engine, MODEL, START, AS_OF, CONTRACT, application=True)
    monkeypatch.setattr(logged, "CHUNK_ROWS", 7)  # many slices, some with one category only
    sliced = read_logged(engine, MODEL, START, AS_OF, CONTRACT, application=True)
    assert len(whole) == 60
    pd.testing.assert_frame_equal(whole, sliced, check_categorical=False)
    # Rows logged without the application (even ones here) have none: all null.
    assert sliced["application.person_age"].tolist()[1::2] == [40.0] * 30
    assert sliced["application.person_income"].isna().tolist()[0::2] == [True] * 30


def test_a_logged_value_of_the_wrong_type_is_named(engine):
    _insert(engine, [_row(1, AS_OF - timedelta(hours=2)),
                     _row(2, AS_OF - timedelta(hours=1), person_income="lots")])  # fmt: skip
    with pytest.raises(ValueError, match=r"prediction p0002: features.person_income = 'lots'"):
        read_logged(engine, MODEL, START, AS_OF, CONTRACT)


def _stats(engine, at: datetime, requests: int, rejections: dict[str, int]) -> None:
    with engine.begin() as conn:
        conn.execute(service_stats.insert(), {
            "window_start": at, "window_s": 10.0, "worker": "w1", "endpoint": "predict",
            "requests": requests, "errors": 0, "rejected": sum(rejections.values()),
            "unauthorized": 0, "latency_sum_s": 0.1, "latency_histogram": {"le": [], "counts": []},
            "rejections": rejections,
        })  # fmt: skip


def test_a_new_loan_intent_shows_as_rejections_of_its_field(engine):
    _stats(engine, AS_OF - timedelta(hours=2), 400, {"loan_intent": 30, "person_age": 1})
    _stats(engine, AS_OF - timedelta(hours=1), 600, {"loan_intent": 30})
    _stats(engine, AS_OF + timedelta(seconds=10), 1000, {"loan_intent": 1000})  # after as_of
    _stats(engine, START - timedelta(seconds=10), 1000, {"person_age": 1000})  # before start
    results = {r.subject: r for r in rejection_results(engine, START, AS_OF)}
    intent = results["predict:loan_intent"]
    assert intent.value == pytest.approx(60 / 1000)
    assert intent.status == th.ALERT  # above REJECTED_SHARE_ALERT
    assert intent.details["field"] == "loan_intent"
    assert results["predict:person_age"].status == th.OK
    assert results["predict:all"].value == pytest.approx(61 / 1000)
    assert results["predict:all"].status == th.INFO


def test_rejections_of_a_few_requests_are_not_judged(engine):
    _stats(engine, AS_OF - timedelta(hours=1), 20, {"loan_intent": 10})
    (overall, intent) = rejection_results(engine, START, AS_OF)
    assert intent.subject == "predict:loan_intent"
    assert intent.value == 0.5
    assert intent.status == th.INFO
