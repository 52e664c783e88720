"""The promotion gate on synthetic labels and probabilities: each rule refuses on its own.

Each refusal test is built so that exactly one rule stands in the way (the others pass, shown
by the reasons naming only it): deleting that rule from ``training.promotion.decide`` promotes
the candidate and fails the test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from creditflow.model.evaluate import metrics, segment_metrics
from creditflow.training.promotion import GatePolicy, decide, paired_bootstrap


def _world(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    logit = rng.normal(-1.5, 1.3, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return logit, labels, rng


def _scores(logit: np.ndarray, noise: np.ndarray | float, rng) -> np.ndarray:
    """A model that sees the true risk through noise (noise in the logit, then recalibrated by
    shrinking toward the mean, so that it stays roughly calibrated)."""
    noise = np.broadcast_to(noise, logit.shape)
    seen = logit + rng.normal(0, 1, len(logit)) * noise
    shrink = 1.3**2 / (1.3**2 + noise**2)
    return 1 / (1 + np.exp(-(-1.5 + shrink * (seen + 1.5))))


def _model(labels, probabilities, segments: pd.DataFrame | None = None) -> dict:
    segments = segments if segments is not None else pd.DataFrame(index=range(len(labels)))
    return {
        "probabilities": probabilities,
        "metrics": metrics(labels, probabilities),
        "segments": segment_metrics(labels, probabilities, segments, 300),
    }


def _only(reasons: list[str], phrase: str) -> None:
    assert reasons and all(phrase in r for r in reasons), reasons


def test_the_bootstrap_auc_is_sklearns_and_reproducible():
    logit, y, rng = _world(3000)
    a, b = np.round(_scores(logit, 0.5, rng), 2), _scores(logit, 1.0, rng)  # ties in a
    interval = paired_bootstrap(y, a, b, resamples=200, seed=3)
    expected = roc_auc_score(y, a) - roc_auc_score(y, b)
    assert interval["difference"] == pytest.approx(expected, abs=1e-6)
    assert interval["low"] < interval["difference"] < interval["high"]
    assert interval == paired_bootstrap(y, a, b, resamples=200, seed=3)
    assert interval["resamples"] == 200 and interval["rows"] == 3000


def test_a_clearly_better_candidate_is_promoted():
    logit, y, rng = _world(5000)
    better, worse = _scores(logit, 0.4, rng), _scores(logit, 1.2, rng)
    decision = decide(_model(y, better), _model(y, worse), y)
    assert decision["promote"] and decision["rule"] == "superior", decision["reasons"]
    assert decision["interval"]["low"] > 0


def test_a_worse_candidate_is_refused_with_reasons():
    logit, y, rng = _world(5000)
    better, worse = _scores(logit, 0.4, rng), _scores(logit, 1.2, rng)
    decision = decide(_model(y, worse), _model(y, better), y)
    assert not decision["promote"]
    assert any("does not beat the champion" in r for r in decision["reasons"])
    assert any("not significant" in r for r in decision["reasons"])


def test_the_margin_refuses_a_significant_but_small_gain():
    logit, y, rng = _world(5000)
    better, worse = _scores(logit, 0.4, rng), _scores(logit, 1.2, rng)
    gain = paired_bootstrap(y, better, worse)["difference"]
    decision = decide(_model(y, better), _model(y, worse), y, GatePolicy(min_gain=gain + 0.01))
    assert decision["interval"]["low"] > 0  # significant: only the margin stands in the way
    assert not decision["promote"]
    _only(decision["reasons"], "does not beat the champion's")


def test_the_interval_refuses_a_gain_within_noise():
    logit, y, rng = _world(400, seed=5)
    candidate, champion = _scores(logit, 0.9, rng), _scores(logit, 1.0, rng)
    decision = decide(_model(y, candidate), _model(y, champion), y, GatePolicy(min_gain=0.001))
    assert decision["interval"]["difference"] >= 0.001  # the margin is met
    assert not decision["promote"]
    _only(decision["reasons"], "not significant")


def test_calibration_refuses_a_better_ranking_that_is_miscalibrated():
    logit, y, rng = _world(5000)
    better, worse = _scores(logit, 0.4, rng), _scores(logit, 1.2, rng)
    overconfident = better**0.6  # the same ranking, probabilities far too high
    decision = decide(_model(y, overconfident), _model(y, worse), y)
    assert decision["interval"]["low"] > 0
    assert not decision["promote"]
    _only(decision["reasons"], "calibration regresses")


def test_a_large_segment_losing_auc_refuses():
    logit, y, rng = _world(6000)
    segment = pd.DataFrame({"loan_intent": np.where(np.arange(6000) % 3 == 0, "A", "B")})
    in_a = segment["loan_intent"].to_numpy() == "A"
    candidate = _scores(logit, np.where(in_a, 1.1, 0.2), rng)  # much better in B, worse in A
    champion = _scores(logit, np.full(6000, 0.8), rng)
    decision = decide(_model(y, candidate, segment), _model(y, champion, segment), y)
    assert decision["interval"]["low"] > 0.002
    assert not decision["promote"]
    _only(decision["reasons"], "segment loan_intent=A")


def test_a_non_inferior_candidate_that_fixes_calibration_is_promoted_if_allowed():
    logit, y, rng = _world(5000)
    calibrated = _scores(logit, 0.6, rng)
    champion = _model(y, calibrated**0.6)  # same ranking, calibration failed
    assert champion["metrics"]["ece"] > GatePolicy().max_ece
    allowed = decide(_model(y, calibrated), champion, y)
    assert allowed["promote"] and allowed["rule"] == "non_inferior_fix"
    strict = decide(_model(y, calibrated), champion, y, GatePolicy(non_inferior_fix=False))
    assert not strict["promote"] and strict["reasons"]
