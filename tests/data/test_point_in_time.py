"""Point-in-time correctness of the training join, on a hand-made world."""

import pandas as pd
import pytest

from creditflow.config import MODEL_FEATURE_SERVICE, get_settings
from creditflow.ingestion.ingest import ingest
from creditflow.ingestion.readers import RawBatch, frame_fingerprint
from creditflow.store.point_in_time import historical_features

T = pd.Timestamp


def _credit(dob_ssn: str, when: str, missed_1y: int) -> dict:
    at = T(when, tz="UTC")
    return {
        "dob_ssn": dob_ssn, "credit_card_due": 1000, "mortgage_due": 0, "student_loan_due": 0,
        "vehicle_loan_due": 0, "hard_pulls": 1, "missed_payments_2y": missed_1y,
        "missed_payments_1y": missed_1y, "missed_payments_6m": 0, "bankruptcies": 0,
        "event_timestamp": at, "created_timestamp": at,
    }  # fmt: skip


def _loan(loan_id: int, dob_ssn: str, when: str) -> dict:
    return {
        "loan_id": loan_id, "dob_ssn": dob_ssn, "zipcode": 2110, "person_age": 40,
        "person_income": 50000, "person_home_ownership": "RENT", "person_emp_length": 3.0,
        "loan_intent": "PERSONAL", "loan_amnt": 10000, "loan_int_rate": 12.0, "loan_status": 0,
        "event_timestamp": T(when, tz="UTC"),
    }  # fmt: skip


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory, feast_cli):
    """A home of its own: one zipcode, two people, snapshots before and after their loans."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key in ("CREDITFLOW_HOME", "BENTOML_HOME", "FEAST_FS_YAML_FILE_PATH"):
            monkeypatch.setenv(key, "")
        monkeypatch.setenv("CREDITFLOW_HOME", str(tmp_path_factory.mktemp("tiny-home")))
        yield _build_tiny_home(feast_cli)


def _build_tiny_home(feast_cli):
    settings = get_settings()
    zip_at = T("2025-01-01", tz="UTC")
    zipcodes = pd.DataFrame(
        [{"zipcode": 2110, "city": "Boston", "state": "MA", "location_type": "PRIMARY",
          "tax_returns_filed": 1000, "population": 2000, "total_wages": 50_000_000,
          "event_timestamp": zip_at, "created_timestamp": zip_at}]
    )  # fmt: skip
    history = pd.DataFrame(
        [
            _credit("19850101_0001", "2026-01-01", missed_1y=0),
            _credit("19850101_0001", "2026-03-01", missed_1y=4),  # after the first loan
            _credit("19900101_0002", "2026-06-01", missed_1y=7),  # only after the loan
        ]
    )
    for name, frame in (("zipcodes", zipcodes), ("credit_history", history)):
        summary = ingest(name, RawBatch(frame, name, frame_fingerprint(frame)), settings)
        assert summary["accepted"] == len(frame)
    feast_cli(settings, "apply")
    return settings


def test_training_sees_the_snapshot_as_of_the_loan(tiny_home):
    loans = pd.DataFrame(
        [
            _loan(1, "19850101_0001", "2026-02-01"),  # between the two snapshots
            _loan(2, "19850101_0001", "2026-03-15"),  # after the second
            _loan(3, "19900101_0002", "2026-02-01"),  # before the person's only snapshot
        ]
    )
    joined = historical_features(loans, MODEL_FEATURE_SERVICE, tiny_home)
    assert list(joined["loan_id"]) == [1, 2, 3]  # nothing dropped, order kept
    missed = joined.set_index("loan_id")["missed_payments_1y"]
    assert missed[1] == 0  # the later value (4) must not leak into the earlier loan
    assert missed[2] == 4
    assert pd.isna(missed[3])  # nothing known yet: missing, not the future value, not dropped
    # The on-demand view handles the missing bureau data instead of crashing.
    totals = joined.set_index("loan_id")["total_debt"]
    assert totals[1] == 1000 + 10000
    assert pd.isna(totals[3])
    assert joined.set_index("loan_id")["loan_to_income"][3] == pytest.approx(0.2)


def test_snapshots_older_than_the_ttl_are_not_used(tiny_home):
    late = pd.DataFrame([_loan(4, "19850101_0001", "2027-01-01")])  # > 180 days after March
    joined = historical_features(late, MODEL_FEATURE_SERVICE, tiny_home)
    assert len(joined) == 1
    assert pd.isna(joined["missed_payments_1y"].iloc[0])


def test_demo_world_join_matches_an_independent_as_of_join(demo_home):
    """Every training row's bureau features equal the latest snapshot at or before the loan
    (within the view's TTL), computed independently with pandas."""
    from creditflow.contract import CREDIT_HISTORY
    from creditflow.ingestion.offline import read_table
    from creditflow.store.features import get_store
    from creditflow.training.dataset import build_training_set

    data = build_training_set(MODEL_FEATURE_SERVICE, demo_home.settings)
    ttl = get_store(demo_home.settings).get_feature_view("credit_history").ttl
    history = read_table(demo_home.settings, CREDIT_HISTORY).sort_values("event_timestamp")
    history["event_timestamp"] = pd.to_datetime(history["event_timestamp"], utc=True)
    loans = data.frame[["loan_id", "dob_ssn", "event_timestamp"]].sort_values("event_timestamp")
    loans["event_timestamp"] = loans["event_timestamp"].astype(history["event_timestamp"].dtype)
    expected = pd.merge_asof(
        loans, history[["dob_ssn", "event_timestamp", "missed_payments_1y", "credit_card_due"]],
        on="event_timestamp", by="dob_ssn", direction="backward", tolerance=pd.Timedelta(ttl),
    ).set_index("loan_id")  # fmt: skip
    actual = data.frame.set_index("loan_id").loc[expected.index]
    for column in ("missed_payments_1y", "credit_card_due"):
        pd.testing.assert_series_equal(
            actual[column].astype("float64"), expected[column].astype("float64"),
            check_names=False,
        )  # fmt: skip
    assert expected["missed_payments_1y"].notna().mean() > 0.9
