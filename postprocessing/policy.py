"""The lending policy: what each decision costs. The one place to change the risk appetite.

Decision bands (approve below one default probability, decline at or above another, review in
between) are chosen by training on the validation window to minimise these costs, and stored
with the model.
"""

from __future__ import annotations

import numpy as np

# The decisions, from the most lenient to the strictest.
DECISIONS = ("approve", "review", "decline")

# Loss on a defaulted loan, as a share of the amount lent.
COST_OF_DEFAULT = 1.0
# Margin earned on a good loan, as a share of the amount lent (lost when we decline it).
MARGIN_OF_GOOD_LOAN = 0.25
# A manual review costs this (share of the amount) and stops this share of would-be defaults.
REVIEW_COST = 0.05
REVIEW_CATCH_RATE = 0.5


def decision_costs(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Realised cost of each decision for each application, given its true outcome."""
    defaulted = np.asarray(labels, dtype=float)
    return {
        "approve": defaulted * COST_OF_DEFAULT,
        "decline": (1 - defaulted) * MARGIN_OF_GOOD_LOAN,
        "review": REVIEW_COST + defaulted * (1 - REVIEW_CATCH_RATE) * COST_OF_DEFAULT,
    }


def choose_bands(labels: np.ndarray, probabilities: np.ndarray, grid: int = 101) -> dict:
    """The (approve_below, decline_at) pair with the lowest mean cost on labelled data."""
    probabilities = np.asarray(probabilities, dtype=float)
    costs = decision_costs(labels)
    candidates = np.unique(np.quantile(probabilities, np.linspace(0, 1, grid)))
    candidates = np.concatenate([candidates, [1.0 + 1e-9]])
    best: dict | None = None
    below = probabilities[None, :] < candidates[:, None]  # [threshold, row]
    approve_cost = below @ costs["approve"]
    decline_cost = (~below) @ costs["decline"]  # rows at or above each threshold
    review_cost_below = below @ costs["review"]
    for i, approve_below in enumerate(candidates):
        # rows in [approve_below, decline_at) are reviewed, for every decline_at >= approve_below
        review = review_cost_below[i:] - review_cost_below[i]
        total = approve_cost[i] + review + decline_cost[i:]
        j = int(np.argmin(total))
        if best is None or total[j] < best["total"]:
            best = {"approve_below": float(approve_below),
                    "decline_at": float(candidates[i + j]), "total": float(total[j])}  # fmt: skip
    assert best is not None
    n = len(probabilities)
    approve = probabilities < best["approve_below"]
    decline = probabilities >= best["decline_at"]
    return {
        "approve_below": min(best["approve_below"], 1.0),
        "decline_at": min(best["decline_at"], 1.0),
        "mean_cost": best["total"] / n,
        "share": {
            "approve": float(approve.mean()),
            "review": float((~approve & ~decline).mean()),
            "decline": float(decline.mean()),
        },
        "cost_model": {
            "cost_of_default": COST_OF_DEFAULT,
            "margin_of_good_loan": MARGIN_OF_GOOD_LOAN,
            "review_cost": REVIEW_COST,
            "review_catch_rate": REVIEW_CATCH_RATE,
        },
    }


def band_ranks(probabilities: np.ndarray, bands: dict) -> np.ndarray:
    """The band of each calibrated default probability, as an index of DECISIONS (0 approve,
    1 review, 2 decline): what the business rules start from."""
    p = np.asarray(probabilities, dtype=float)
    return np.where(p < bands["approve_below"], 0, 1 + (p >= bands["decline_at"]))


def decide(probabilities: np.ndarray, bands: dict) -> np.ndarray:
    """approve / review / decline for each calibrated default probability."""
    return np.asarray(DECISIONS)[band_ranks(probabilities, bands)]
