"""Fitting the probability calibration on the validation window (serving applies it with
``creditflow.postprocessing.calibration.Calibration``)."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from creditflow.postprocessing.calibration import Calibration, logit


def _fit(method: str, labels: np.ndarray, probabilities: np.ndarray,
         weights: np.ndarray | None) -> Calibration:  # fmt: skip
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
        iso.fit(probabilities, labels, sample_weight=weights)
        return Calibration("isotonic", iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist())
    if method == "platt":
        lr = LogisticRegression(C=1e6).fit(
            logit(probabilities)[:, None], labels, sample_weight=weights
        )
        return Calibration("platt", slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))
    return Calibration()


def fit_calibration(
    labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None = None
) -> tuple[Calibration, dict]:
    """Pick none, isotonic or Platt by out-of-sample Brier score on the validation window.

    The window (in time order) is split in two halves; each method is fitted on one half and
    scored on the other, both ways. A method is kept only if it beats the raw scores there;
    the winner is then refitted on the whole window. ``weights`` (the rows' recency weights)
    weigh every fit and score, so that the newest outcomes set the calibration.
    """
    labels = np.asarray(labels, dtype=float)
    probabilities = np.asarray(probabilities, dtype=float)
    w = None if weights is None else np.asarray(weights, dtype=float)

    def part(rows: slice) -> np.ndarray | None:
        return None if w is None else w[rows]

    half = len(labels) // 2
    folds = [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    scores: dict[str, float] = {}
    for method in ("none", "isotonic", "platt"):
        briers = []
        for fit_part, score_part in folds:
            calibration = _fit(method, labels[fit_part], probabilities[fit_part], part(fit_part))
            calibrated = calibration.apply(probabilities[score_part])
            briers.append(
                brier_score_loss(labels[score_part], calibrated, sample_weight=part(score_part))
            )
        scores[method] = float(np.mean(briers))
    best = min(scores, key=scores.get)
    return _fit(best, labels, probabilities, w), {"chosen": best, "out_of_sample_brier": scores}
