"""PSI and its bins on cases whose answer can be checked by hand, and how PSI is judged."""

import math

import numpy as np
import pandas as pd
import pytest

from creditflow.monitoring import thresholds as th
from creditflow.monitoring.drift import (
    MISSING,
    OTHER,
    Bins,
    comparable_scores,
    decision_rates,
    drift_status,
    psi,
)


def test_identical_distributions_have_a_psi_of_zero():
    shares = [0.1, 0.2, 0.3, 0.4]
    assert psi(shares, shares) == 0.0
    rng = np.random.default_rng(0)
    reference = rng.normal(size=50_000)
    bins = Bins.numeric(reference)
    assert psi(bins.shares(reference), bins.shares(reference)) == 0.0
    # Another sample of the same distribution: sampling noise only, far below "watch".
    assert psi(bins.shares(reference), bins.shares(rng.normal(size=50_000))) < 0.01


def test_a_known_shift_has_its_known_psi():
    # Half and half moving to 70/30: (0.7-0.5) ln(0.7/0.5) + (0.3-0.5) ln(0.3/0.5).
    expected = 0.2 * math.log(1.4) + 0.2 * math.log(0.5 / 0.3)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    assert expected == pytest.approx(0.16946, abs=1e-5)
    # PSI is symmetric in its two distributions.
    assert psi([0.7, 0.3], [0.5, 0.5]) == pytest.approx(expected)


def test_an_empty_bin_is_floored_at_epsilon_not_infinite():
    found = psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1])
    eps = th.PSI_EPSILON
    assert math.isfinite(found)
    assert found == pytest.approx((0.1 - eps) * math.log(0.1 / eps) + -0.1 * math.log(0.4 / 0.5))


def test_numeric_bins_are_the_references_quantiles_with_missing_apart():
    reference = np.arange(1, 101, dtype=float)  # 1..100: deciles at 10, 20, ..., 90
    bins = Bins.numeric(np.append(reference, [np.nan] * 25))
    assert len(bins.edges) == th.PSI_BINS - 1
    assert bins.labels[-1] == MISSING
    assert len(bins.labels) == th.PSI_BINS + 1
    shares = bins.shares(np.append(reference, [np.nan] * 25))
    assert shares[:-1] == pytest.approx([0.08] * 10)  # each decile: 10 of 125 rows
    assert shares[-1] == pytest.approx(0.2)
    # Values outside the reference's range fall in the first and last bins.
    counts = bins.counts([-1e9, 0.0, 1e9, np.nan])
    assert counts[0] == 2 and counts[-2] == 1 and counts[-1] == 1


def test_a_mostly_constant_feature_gets_few_bins():
    reference = np.array([0.0] * 90 + [1.0] * 8 + [2.0] * 2)
    bins = Bins.numeric(reference)
    # Nine deciles are 0 (at least 90% of the rows are <= 0): one edge, two bins and missing.
    assert bins.edges == (0.0,)
    assert list(bins.shares(reference)) == pytest.approx([0.9, 0.1, 0.0])


def test_income_in_thousands_is_an_alert():
    rng = np.random.default_rng(1)
    income = rng.lognormal(11, 0.5, 20_000).round()
    bins = Bins.numeric(income)
    thousands = (income / 1000).round()
    found = psi(bins.shares(income), bins.shares(thousands))
    assert drift_status(found, len(thousands)) == th.ALERT
    assert found > 5  # every row in the lowest bin


def test_categorical_bins_are_the_references_categories_then_other_and_missing():
    reference = pd.Series(["RENT"] * 6 + ["OWN"] * 3 + [None])
    bins = Bins.categorical(reference)
    assert bins.labels == ("RENT", "OWN", OTHER, MISSING)
    current = pd.Series(["RENT", "OWN", "BOAT", "BOAT", None], dtype="category")
    assert list(bins.counts(current)) == [1, 1, 2, 1]
    assert list(bins.shares(reference)) == pytest.approx([0.6, 0.3, 0.0, 0.1])


@pytest.mark.parametrize(
    ("value", "rows", "status"),
    [
        (0.05, 10_000, th.OK),
        (th.PSI_WATCH, 10_000, th.WATCH),
        (0.2, 10_000, th.WATCH),
        (0.3, 10_000, th.ALERT),
        (5.0, th.MIN_ROWS_FOR_DRIFT - 1, th.INFO),  # too few live rows to judge
        (None, 10_000, th.INFO),  # no live rows at all
    ],
)
def test_psi_is_judged_by_the_declared_thresholds(value, rows, status):
    assert drift_status(value, rows) == status


def test_decision_rates_count_every_decision():
    rates = decision_rates(pd.Series(["approve"] * 6 + ["review"] * 3 + ["decline"]))
    assert rates == {"approve": 0.6, "review": 0.3, "decline": 0.1}
    assert decision_rates(pd.Series([], dtype=object)) == {
        "approve": 0.0, "review": 0.0, "decline": 0.0,
    }  # fmt: skip


def test_isotonic_steps_computed_in_float32_do_not_drift():
    """An isotonic calibration's scores are a few steps; the service's float32 path gives each
    step about 1e-8 away from the reference's float64 value. A quantile edge sits on a step:
    unrounded, the whole step would change bins (PSI in the thousands for the same scores)."""
    rng = np.random.default_rng(0)
    steps = np.array([1 / 68, 5 / 97, 11 / 80, 0.31, 0.62])
    reference = steps[rng.integers(0, len(steps), 5000)]
    live = reference.astype(np.float32).astype(np.float64)  # the same scores, served
    assert not np.array_equal(live, reference)
    bins = Bins.numeric(comparable_scores(reference))
    value = psi(bins.shares(comparable_scores(reference)), bins.shares(comparable_scores(live)))
    assert value < 1e-9


def test_what_chance_alone_gives_few_rows_over_many_bins_is_not_drift():
    """300 live rows of the same fifty-category distribution: PSI about 0.16 by chance alone,
    sometimes above the alert line; judged beyond that, no alert. The same PSI on a day of
    traffic over ten bins is judged as it is."""
    from creditflow.monitoring.drift import sampling_psi

    rng = np.random.default_rng(0)
    shares = rng.dirichlet(np.ones(50) * 2)
    reference = rng.choice(50, 20_000, p=shares)
    values = []
    for _ in range(200):
        live = rng.choice(50, 300, p=shares)
        bins = Bins.categorical(pd.Series(reference.astype(str)))
        value = psi(
            bins.shares(pd.Series(reference.astype(str))), bins.shares(pd.Series(live.astype(str)))
        )
        values.append(value)
        assert drift_status(value, 300, 50, 20_000) != th.ALERT
    assert np.mean(values) == pytest.approx(sampling_psi(50, 300, 20_000), rel=0.35)
    assert max(values) > th.PSI_ALERT * 0.8  # chance alone comes near the line
    assert sampling_psi(10, 7_000, 20_000) < 0.002
    assert drift_status(0.3, 7_000, 10, 20_000) == th.ALERT
