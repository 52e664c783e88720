"""Tests for the synthetic lending world: schema, determinism, dirt, and point-in-time structure."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from creditflow.contract import HOME_OWNERSHIP, LOAN_INTENTS
from creditflow.demo_world.generator import TABLES, dirty_mask, generate_world, write_world

N = 3_000
END = datetime(2025, 6, 1, tzinfo=UTC)
UTC_TS = "datetime64[ns, UTC]"

EXPECTED_SCHEMA = {
    "loans": [
        ("loan_id", "int64"),
        ("dob_ssn", "object"),
        ("zipcode", "int64"),
        ("person_age", "int64"),
        ("person_income", "int64"),
        ("person_home_ownership", "object"),
        ("person_emp_length", "float64"),
        ("loan_intent", "object"),
        ("loan_amnt", "int64"),
        ("loan_int_rate", "float64"),
        ("loan_status", "int64"),
        ("event_timestamp", UTC_TS),
        ("created_timestamp", UTC_TS),
    ],
    "zipcodes": [
        ("zipcode", "int64"),
        ("city", "object"),
        ("state", "object"),
        ("location_type", "object"),
        ("tax_returns_filed", "int64"),
        ("population", "int64"),
        ("total_wages", "int64"),
        ("event_timestamp", UTC_TS),
        ("created_timestamp", UTC_TS),
    ],
    "credit_history": [
        ("dob_ssn", "object"),
        ("credit_card_due", "int64"),
        ("mortgage_due", "int64"),
        ("student_loan_due", "int64"),
        ("vehicle_loan_due", "int64"),
        ("hard_pulls", "int64"),
        ("missed_payments_2y", "int64"),
        ("missed_payments_1y", "int64"),
        ("missed_payments_6m", "int64"),
        ("bankruptcies", "int64"),
        ("event_timestamp", UTC_TS),
        ("created_timestamp", UTC_TS),
    ],
}

KNOWN_HOME = set(HOME_OWNERSHIP)
KNOWN_INTENT = set(LOAN_INTENTS)


@pytest.fixture(scope="module")
def world() -> dict[str, pd.DataFrame]:
    return generate_world(N, seed=0, end=END)


def _defects(loans: pd.DataFrame) -> pd.DataFrame:
    """The validity rules, written out here independently of the generator's own helper."""
    home = loans["person_home_ownership"]
    intent = loans["loan_intent"]
    return pd.DataFrame(
        {
            "bad_age": (loans["person_age"] < 18) | (loans["person_age"] > 100),
            "bad_income": (loans["person_income"] < 0) | (loans["person_income"] > 10_000_000),
            "null_emp": loans["person_emp_length"].isna(),
            "null_rate": loans["loan_int_rate"].isna(),
            "bad_rate": (loans["loan_int_rate"] < 0) | (loans["loan_int_rate"] > 100),
            "null_home": home.isna(),
            "unknown_home": home.notna() & ~home.isin(KNOWN_HOME),
            "unknown_intent": ~intent.isin(KNOWN_INTENT),
            "other_null": loans.drop(
                columns=["person_emp_length", "loan_int_rate", "person_home_ownership"]
            )
            .isna()
            .any(axis=1),
        }
    )


def test_deterministic_for_a_seed(world: dict[str, pd.DataFrame]) -> None:
    again = generate_world(N, seed=0, end=END)
    other = generate_world(N, seed=1, end=END)
    assert tuple(world) == tuple(again) and set(world) == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(world[name], again[name])
        assert not world[name].equals(other[name])


def test_schema(world: dict[str, pd.DataFrame]) -> None:
    for name, expected in EXPECTED_SCHEMA.items():
        frame = world[name]
        assert list(frame.columns) == [col for col, _ in expected], name
        assert [str(dtype) for dtype in frame.dtypes] == [dtype for _, dtype in expected], name
        assert frame.index.equals(pd.RangeIndex(len(frame))), name


@pytest.mark.parametrize("share", [0.0, 0.01, 0.05])
def test_dirty_share(share: float) -> None:
    loans = generate_world(N, seed=2, end=END, dirty_share=share)["loans"]
    defects = _defects(loans)
    expected = round(N * share)
    assert dirty_mask(loans).sum() == expected
    assert (defects.any(axis=1) == dirty_mask(loans)).all()
    # Each dirty row carries exactly one defect.
    assert (defects.sum(axis=1)[defects.any(axis=1)] == 1).all()
    if expected:
        assert defects.sum().astype(bool).sum() >= 4  # several defect kinds show up


def test_clean_rows_are_realistic(world: dict[str, pd.DataFrame]) -> None:
    loans = world["loans"][~dirty_mask(world["loans"])]
    assert loans["person_age"].between(20, 75).all()
    assert loans["person_emp_length"].between(0, 30).all()
    assert 40_000 < loans["person_income"].median() < 70_000
    assert loans["loan_amnt"].gt(0).all()
    assert 0.75 < loans["dob_ssn"].nunique() / len(loans) < 0.95  # repeat borrowers
    # Date of birth in dob_ssn agrees with the stated age at the loan time.
    born = pd.to_datetime(loans["dob_ssn"].str[:8], format="%Y%m%d")
    on = loans["event_timestamp"].dt.tz_localize(None)
    before_birthday = (on.dt.month < born.dt.month) | (
        (on.dt.month == born.dt.month) & (on.dt.day < born.dt.day)
    )
    age = on.dt.year - born.dt.year - before_birthday.astype(int)
    assert (age == loans["person_age"]).all()


def test_dirty_share_only_changes_dirty_rows() -> None:
    clean = generate_world(N, seed=2, end=END, dirty_share=0.0)
    dirty = generate_world(N, seed=2, end=END, dirty_share=0.05)
    for name in ("zipcodes", "credit_history"):
        pd.testing.assert_frame_equal(clean[name], dirty[name])
    keep = ~dirty_mask(dirty["loans"])
    pd.testing.assert_frame_equal(clean["loans"][keep], dirty["loans"][keep])


def test_keys_and_timestamps(world: dict[str, pd.DataFrame]) -> None:
    loans, zips, credit = world["loans"], world["zipcodes"], world["credit_history"]
    assert loans["loan_id"].is_unique
    assert loans["loan_id"].is_monotonic_increasing
    assert loans["event_timestamp"].is_monotonic_increasing
    assert loans["zipcode"].isin(zips["zipcode"]).all()
    assert loans["dob_ssn"].isin(credit["dob_ssn"]).all()
    assert loans["dob_ssn"].str.fullmatch(r"\d{8}_\d{4}").all()
    end = pd.Timestamp(END)
    for frame in world.values():
        for col in ("event_timestamp", "created_timestamp"):
            assert str(frame[col].dt.tz) == "UTC"
        assert (frame["event_timestamp"] < end).all()
        assert (frame["created_timestamp"] >= frame["event_timestamp"]).all()
    assert loans["event_timestamp"].min() >= end - pd.Timedelta(days=366)
    # Zipcode snapshots: one before every loan, some zipcodes updated later.
    assert zips.groupby("zipcode")["event_timestamp"].min().max() < loans["event_timestamp"].min()
    assert 200 <= zips["zipcode"].nunique() <= 5_000
    assert zips.groupby("zipcode").size().gt(1).any()
    assert zips["state"].nunique() >= 10
    assert zips["state"].str.fullmatch("[A-Z]{2}").all()
    assert zips["city"].nunique() > 100


def test_default_rate(world: dict[str, pd.DataFrame]) -> None:
    assert set(world["loans"]["loan_status"].unique()) == {0, 1}
    assert 0.10 < world["loans"]["loan_status"].mean() < 0.35


def test_credit_history_evolves(world: dict[str, pd.DataFrame]) -> None:
    credit = world["credit_history"].sort_values(["dob_ssn", "event_timestamp"])
    sizes = credit.groupby("dob_ssn").size()
    assert sizes.between(2, 6).all()
    assert credit.groupby("dob_ssn")["bankruptcies"].diff().dropna().ge(0).all()
    windows = credit[["missed_payments_6m", "missed_payments_1y", "missed_payments_2y"]]
    assert (windows.diff(axis=1).iloc[:, 1:] >= 0).all().all()  # 6m <= 1y <= 2y


def _as_of(loans: pd.DataFrame, credit: pd.DataFrame) -> pd.DataFrame:
    return pd.merge_asof(
        loans.sort_values("event_timestamp"),
        credit.drop(columns="created_timestamp").sort_values("event_timestamp"),
        on="event_timestamp",
        by="dob_ssn",
        direction="backward",
    )


def test_point_in_time_matters(world: dict[str, pd.DataFrame]) -> None:
    loans, credit = world["loans"], world["credit_history"]
    as_of = _as_of(loans[["loan_id", "dob_ssn", "event_timestamp", "loan_status"]], credit)
    # Most loans find a snapshot; a few thin-file ones do not.
    missing = as_of["missed_payments_1y"].isna().mean()
    assert 0.005 < missing < 0.08

    later = as_of.merge(
        credit[["dob_ssn", "event_timestamp", "missed_payments_1y"]],
        on="dob_ssn",
        suffixes=("", "_later"),
    )
    later = later[later["event_timestamp_later"] > later["event_timestamp"]]
    changed = later[later["missed_payments_1y_later"] != later["missed_payments_1y"]]
    assert changed["loan_id"].nunique() > 0.1 * len(loans)

    # A leaky join (latest snapshot whatever its time) shows defaulters far worse off than
    # they looked when the loan was granted.
    latest = credit.sort_values("event_timestamp").groupby("dob_ssn").tail(1)
    leaky = as_of.merge(
        latest[["dob_ssn", "missed_payments_1y"]], on="dob_ssn", suffixes=("", "_x")
    )
    gap = (
        (leaky["missed_payments_1y_x"] - leaky["missed_payments_1y"])
        .groupby(leaky["loan_status"])
        .mean()
    )
    assert gap[1] > gap[0] + 1.0


def test_write_world_round_trip(world: dict[str, pd.DataFrame], tmp_path) -> None:
    paths = write_world(world, tmp_path / "world")
    assert set(paths) == set(TABLES)
    for name, path in paths.items():
        assert path == tmp_path / "world" / f"{name}.parquet"
        pd.testing.assert_frame_equal(pd.read_parquet(path), world[name])
    assert sorted(p.name for p in (tmp_path / "world").iterdir()) == sorted(
        f"{name}.parquet" for name in TABLES
    )
    write_world(world, tmp_path / "world")  # overwrite in place works


def test_default_end_is_today_midnight_utc() -> None:
    loans = generate_world(50, seed=0)["loans"]
    today = pd.Timestamp.now(tz="UTC").normalize()
    assert loans["event_timestamp"].max() < today + pd.Timedelta(days=1)
    assert loans["event_timestamp"].min() >= today - pd.Timedelta(days=366)


def test_rejects_naive_end() -> None:
    with pytest.raises(ValueError):
        generate_world(10, end=datetime(2025, 6, 1))
