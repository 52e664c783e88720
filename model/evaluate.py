"""Model quality on labeled rows: overall, by calibration bin and by segment.

One definition of every measure for training (evaluation, the promotion gate) and monitoring
(realized accuracy once outcomes arrive). It needs scikit-learn (the training or monitoring
extra); serving never imports it (an import-linter contract in pyproject.toml).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

ECE_BINS = 10
# Age bands of the segment report: (label, lowest age, highest age or None for open-ended).
AGE_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("18-25", 18, 25),
    ("26-35", 26, 35),
    ("36-50", 36, 50),
    ("51+", 51, None),
)
SEGMENT_COLUMNS = ("loan_intent", "person_home_ownership", "age_band")
# Below this many rows a segment's metrics are reported but flagged as not to be over-read.
MIN_SEGMENT_ROWS = 200
MISSING = "missing"


def _arrays(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(probabilities, dtype=float).ravel()
    if len(y) != len(p):
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    return y, p


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins over [0, 1]; a probability of exactly 1 falls in the last bin."""
    return np.clip((p * n_bins).astype(int), 0, n_bins - 1)


def reliability(labels, probabilities, n_bins: int = ECE_BINS) -> list[dict]:
    """Predicted vs observed default rate per equal-width probability bin (empty bins skipped)."""
    y, p = _arrays(labels, probabilities)
    index = _bin_index(p, n_bins)
    rows = []
    for b in range(n_bins):
        in_bin = index == b
        if not in_bin.any():
            continue
        rows.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "rows": int(in_bin.sum()),
                "mean_predicted": float(p[in_bin].mean()),
                "observed_rate": float(y[in_bin].mean()),
            }
        )
    return rows


def ks_statistic(labels, probabilities) -> float:
    """Largest gap between the score CDFs of defaults and non-defaults (max |TPR - FPR|)."""
    y, p = _arrays(labels, probabilities)
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    return float(np.max(np.abs(tpr - fpr)))


def expected_calibration_error(labels, probabilities, n_bins: int = ECE_BINS) -> float:
    """Mean |predicted - observed| over equal-width bins, weighted by how many rows each holds."""
    bins = reliability(labels, probabilities, n_bins)
    total = sum(b["rows"] for b in bins)
    return float(
        sum(b["rows"] * abs(b["mean_predicted"] - b["observed_rate"]) for b in bins) / total
    )


def expected_roc_auc(probabilities: Any) -> float | None:
    """The ROC AUC to expect if each outcome were Bernoulli(p) of its own calibrated probability.

    As CBPE does, the ratio of expectations: with scores s = p, over ordered pairs i != j,

        E[AUC] ~= sum p_j (1 - p_i) ([s_j > s_i] + 1/2 [s_j = s_i]) / sum p_j (1 - p_i)

    the numerator being the expected number of correctly ranked (default, non-default) pairs,
    ties counted half as ``roc_auc_score`` does, and the denominator E[#defaults x
    #non-defaults] = P Q - sum p (1 - p) with P = sum p, Q = sum (1 - p). Exact, in
    O(n log n): rows with equal scores form a group g with sums P_g, Q_g, R_g = sum p (1 - p);
    the numerator is sum_g P_g (Q of the lower groups) + 1/2 sum_g (P_g Q_g - R_g).
    None when no pair can have both classes (fewer than two rows, every p 0 or every p 1).
    """
    p = np.asarray(probabilities, dtype=float).ravel()
    if len(p) < 2:
        return None
    scores, group = np.unique(p, return_inverse=True)  # ascending, one group per distinct score
    pos = np.bincount(group, weights=p, minlength=len(scores))
    neg = np.bincount(group, weights=1.0 - p, minlength=len(scores))
    both = np.bincount(group, weights=p * (1.0 - p), minlength=len(scores))
    negatives_below = np.cumsum(neg) - neg
    pairs = pos.sum() * neg.sum() - both.sum()
    if pairs <= 0:
        return None
    ranked = float(pos @ negatives_below + 0.5 * (pos @ neg - both.sum()))
    return ranked / float(pairs)


def approved_band_gap(labels, probabilities, approved) -> dict[str, float | int | None]:
    """Realized vs expected ROC AUC (:func:`expected_roc_auc`) on the rows a model approves:
    the only rows that ever get an outcome in production. Measured on the test window at
    training, it is the model's own gap there (calibration is least exact in the low-risk band),
    which monitoring then allows for instead of calling it a change of the world."""
    y = np.asarray(labels)[np.asarray(approved, dtype=bool)]
    p = np.asarray(probabilities, dtype=float)[np.asarray(approved, dtype=bool)]
    realized = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None
    expected = expected_roc_auc(p)
    gap = None if realized is None or expected is None else expected - realized
    return {"rows": int(len(y)), "roc_auc": realized, "expected_roc_auc": expected, "gap": gap}


def metrics(labels, probabilities) -> dict[str, float | None]:
    """ROC AUC, PR AUC, KS, Brier, ECE and the base rate.

    Ranking metrics (roc_auc, pr_auc, ks) are None when the labels hold a single class, as a
    small segment may: they are undefined there, and one empty slice must not sink a report.
    """
    y, p = _arrays(labels, probabilities)
    if len(y) == 0:
        keys = ("roc_auc", "pr_auc", "ks", "brier", "ece", "default_rate")
        return {**dict.fromkeys(keys), "rows": 0}
    both_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both_classes else None,
        "pr_auc": float(average_precision_score(y, p)) if both_classes else None,
        "ks": ks_statistic(y, p) if both_classes else None,
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p),
        "default_rate": float(np.mean(y)),
        "rows": int(len(y)),
    }


def age_band(age: pd.Series) -> pd.Series:
    """The AGE_BANDS label of each age (whole years); ages outside every band are MISSING."""
    years = np.floor(pd.to_numeric(age, errors="coerce"))
    bands = pd.Series(MISSING, index=age.index, dtype=object)
    for label, low, high in AGE_BANDS:
        inside = years >= low if high is None else years.between(low, high)
        bands[inside.fillna(False).astype(bool)] = label
    return bands


def segments_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The segments quality is broken down by: loan intent, home ownership and age band."""
    return pd.DataFrame(
        {
            "loan_intent": frame["loan_intent"].astype(object).fillna(MISSING).astype(str),
            "person_home_ownership": (
                frame["person_home_ownership"].astype(object).fillna(MISSING).astype(str)
            ),
            "age_band": age_band(frame["person_age"]),
        },
        index=frame.index,
    )


def segment_metrics(
    labels, probabilities, segments: pd.DataFrame, min_rows: int = MIN_SEGMENT_ROWS
) -> dict[str, dict[str, dict]]:
    """metrics() per value of each segment column, in row order of ``segments`` (positional).

    Every slice is reported; ``large`` says whether it has enough rows (``min_rows``) for its
    numbers to be trusted, so small slices stay visible without being over-read.
    """
    y, p = _arrays(labels, probabilities)
    if len(segments) != len(y):
        raise ValueError(f"{len(segments)} segment rows for {len(y)} labels")
    result: dict[str, dict[str, dict]] = {}
    for column in segments.columns:
        values = segments[column].astype(object).fillna(MISSING).astype(str).to_numpy()
        result[column] = {}
        for value in sorted(set(values)):
            mask = values == value
            found = metrics(y[mask], p[mask])
            result[column][value] = {**found, "large": found["rows"] >= min_rows}
    return result
