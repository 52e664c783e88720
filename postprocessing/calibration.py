"""Probability calibration as serving applies it (training fits it: training/calibrate.py).

Stored as plain numbers in the model's metadata (isotonic knots or Platt coefficients), so
serving needs no scikit-learn object and cannot drift from what was fitted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
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
            return 1 / (1 + np.exp(-(self.slope * logit(p) + self.intercept)))
        return p

    def to_metadata(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metadata(cls, meta: dict | None) -> Calibration:
        return cls(**meta) if meta else cls()
