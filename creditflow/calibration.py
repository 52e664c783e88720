"""Probability calibration, fitted by training and applied identically by serving.

Stored as plain numbers in the model's metadata (isotonic knots or Platt coefficients), so
serving needs no scikit-learn object and cannot drift from what was fitted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibration:
    method: str = "none"  # "none", "isotonic" or "platt"
    knots_x: list[float] = field(default_factory=list)
    knots_y: list[float] = field(default_factory=list)
    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        p = np.asarray(probabilities, dtype=float)
        if self.method == "isotonic":
            return np.interp(p, self.knots_x, self.knots_y)
        if self.method == "platt":
            return 1 / (1 + np.exp(-(self.slope * _logit(p) + self.intercept)))
        return p

    def to_metadata(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metadata(cls, meta: dict | None) -> Calibration:
        return cls(**meta) if meta else cls()


def _fit(method: str, labels: np.ndarray, probabilities: np.ndarray) -> Calibration:
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)
        iso.fit(probabilities, labels)
        return Calibration("isotonic", iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist())
    if method == "platt":
        lr = LogisticRegression(C=1e6).fit(_logit(probabilities)[:, None], labels)
        return Calibration("platt", slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))
    return Calibration()


def fit_calibration(labels: np.ndarray, probabilities: np.ndarray) -> tuple[Calibration, dict]:
    """Pick none, isotonic or Platt by out-of-sample Brier score on the validation window.

    The window (in time order) is split in two halves; each method is fitted on one half and
    scored on the other, both ways. A method is kept only if it beats the raw scores there;
    the winner is then refitted on the whole window.
    """
    labels = np.asarray(labels, dtype=float)
    probabilities = np.asarray(probabilities, dtype=float)
    half = len(labels) // 2
    folds = [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    scores: dict[str, float] = {}
    for method in ("none", "isotonic", "platt"):
        briers = []
        for fit_part, score_part in folds:
            calibration = _fit(method, labels[fit_part], probabilities[fit_part])
            calibrated = calibration.apply(probabilities[score_part])
            briers.append(brier_score_loss(labels[score_part], calibrated))
        scores[method] = float(np.mean(briers))
    best = min(scores, key=scores.get)
    return _fit(best, labels, probabilities), {"chosen": best, "out_of_sample_brier": scores}
