"""The simulated world: scenarios, the generator's hooks, one day's applicants (fast, no home)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from creditflow.contract import APPLICATIONS, violations
from creditflow.demo_world import scenarios
from creditflow.demo_world.generator import generate_world
from creditflow.simulation.world import SimulatedWorld

START = datetime(2026, 1, 1, tzinfo=UTC)


def world(drifts: str = "") -> SimulatedWorld:
    parsed = [scenarios.parse_drift(d) for d in drifts.split()]
    return SimulatedWorld(START, 2_000, seed=3, drifts=parsed)


@pytest.mark.parametrize(
    ("text", "message"),
    [("income_unit@3", "unknown scenario"), ("rate_regime", "SCENARIO@DAY"),
     ("rate_regime@x", "SCENARIO@DAY"), ("none@-1", "SCENARIO@DAY")],
)  # fmt: skip
def test_a_bad_drift_is_refused_naming_it(text, message):
    with pytest.raises(ValueError, match=message) as err:
        scenarios.parse_drift(text)
    assert text in str(err.value)


def test_a_day_is_that_days_applicants_with_unique_loan_ids():
    w = world()
    one, two = w.day(1), w.day(2)
    for day in (one, two):
        times = day.applications["event_timestamp"]
        assert times.gt(day.end - timedelta(days=1)).all() and times.le(day.end).all()
        assert (violations(day.applications[APPLICATIONS.names], APPLICATIONS) == "").all()
        assert day.credit_history["event_timestamp"].is_monotonic_increasing
        assert set(day.applications["dob_ssn"]) <= set(day.credit_history["dob_ssn"])
    assert not set(one.applications["loan_id"]) & set(two.applications["loan_id"])
    pd.testing.assert_frame_equal(one.applications, w.day(1).applications)  # deterministic


def test_days_share_the_history_zipcode_table():
    w = world()
    history = w.history(3_000)["zipcodes"]
    later = generate_world(100, seed=9, end=START + timedelta(days=40), zip_seed=w.zip_seed)
    columns = ["zipcode", "city", "state", "population", "total_wages"]
    pd.testing.assert_frame_equal(history[columns], later["zipcodes"][columns])
    assert set(w.day(5).applications["zipcode"]) <= set(history["zipcode"])


def test_income_units_changes_what_upstream_reports_not_the_truth():
    plain, broken = world().day(4), world("income_units@4").day(4)
    pd.testing.assert_frame_equal(plain.truth, broken.truth)
    ratio = plain.applications["person_income"] / broken.applications["person_income"]
    assert ratio.between(999, 1_100).all()
    assert world("income_units@5").day(4).applications.equals(plain.applications)  # not yet
    assert world("income_units@1").day(11).applications.equals(world().day(11).applications)


def test_new_category_breaks_the_contract_on_loan_intent():
    day = world("new_category@1").day(2)
    reasons = violations(day.applications[APPLICATIONS.names], APPLICATIONS)
    share = reasons.ne("").mean()
    assert 0.2 < share < 0.4
    assert reasons[reasons.ne("")].str.contains("loan_intent").all()


def test_income_shift_lowers_true_incomes():
    plain, shifted = world().day(3), world("income_shift@1").day(3)
    ratio = shifted.applications["person_income"].median() / plain.applications[
        "person_income"].median()  # fmt: skip
    assert 0.5 < ratio < 0.7


def test_rate_regime_changes_the_truth_not_the_applications():
    plain, regime = world().day(3), world("rate_regime@2").day(3)
    pd.testing.assert_frame_equal(plain.applications, regime.applications)
    frame = plain.applications.merge(plain.truth[["loan_id", "loan_status"]], on="loan_id")
    after = regime.applications.merge(regime.truth[["loan_id", "loan_status"]], on="loan_id")
    high = frame["loan_int_rate"] > frame["loan_int_rate"].median()
    # Before: higher rates default more; after the regime change the relationship reverses
    # given the same applicants (what only outcomes reveal).
    assert frame.loc[high, "loan_status"].mean() > frame.loc[~high, "loan_status"].mean()
    assert (after.loc[high, "loan_status"].mean() - after.loc[~high, "loan_status"].mean()) < (
        frame.loc[high, "loan_status"].mean() - frame.loc[~high, "loan_status"].mean()
    ) - 0.05


def test_generator_hooks_refuse_bad_values():
    with pytest.raises(ValueError, match="loan_days"):
        generate_world(100, end=START, loan_days=0)
    with pytest.raises(ValueError, match="income_scale"):
        generate_world(100, end=START, income_scale=0)
