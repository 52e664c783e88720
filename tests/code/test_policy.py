"""Decision bands from the cost model, and probability calibration."""

import itertools

import numpy as np
import pytest

from creditflow.postprocessing.calibration import Calibration
from creditflow.postprocessing.policy import choose_bands, decide, decision_costs
from creditflow.training.calibrate import fit_calibration


def _mean_cost(labels, probabilities, approve_below, decline_at):
    costs = decision_costs(labels)
    approve = probabilities < approve_below
    decline = probabilities >= decline_at
    review = ~approve & ~decline
    total = costs["approve"][approve].sum() + costs["decline"][decline].sum()
    return (total + costs["review"][review].sum()) / len(labels)


def test_chosen_bands_are_the_cheapest_on_the_data():
    rng = np.random.default_rng(0)
    p = rng.beta(2, 6, 3000)
    y = (rng.random(3000) < p).astype(int)
    bands = choose_bands(y, p, grid=41)
    assert bands["approve_below"] <= bands["decline_at"]
    chosen = _mean_cost(y, p, bands["approve_below"], bands["decline_at"])
    assert chosen == pytest.approx(bands["mean_cost"])
    grid = np.quantile(p, np.linspace(0, 1, 41))
    for a, d in itertools.combinations_with_replacement(np.append(grid, 1.01), 2):
        assert chosen <= _mean_cost(y, p, a, d) + 1e-12
    assert sum(bands["share"].values()) == pytest.approx(1.0)


def test_decide_follows_the_bands():
    bands = {"approve_below": 0.1, "decline_at": 0.3}
    assert list(decide(np.array([0.0, 0.0999, 0.1, 0.2999, 0.3, 1.0]), bands)) == [
        "approve", "approve", "review", "review", "decline", "decline",
    ]  # fmt: skip


def test_miscalibrated_scores_get_calibrated_out_of_sample():
    rng = np.random.default_rng(1)
    truth = rng.beta(2, 5, 6000)
    labels = (rng.random(6000) < truth).astype(int)
    skewed = truth**0.4  # far too high
    calibration, info = fit_calibration(labels, skewed)
    assert info["chosen"] in ("isotonic", "platt")
    assert info["out_of_sample_brier"][info["chosen"]] < info["out_of_sample_brier"]["none"]
    restored = Calibration.from_metadata(calibration.to_metadata())
    np.testing.assert_allclose(restored.apply(skewed), calibration.apply(skewed))
    assert np.all(np.diff(restored.apply(np.sort(skewed))) >= -1e-12)  # keeps the ranking


def test_no_calibration_is_the_identity():
    p = np.array([0.01, 0.5, 0.99])
    np.testing.assert_array_equal(Calibration().apply(p), p)
