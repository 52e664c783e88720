"""Business rules applied after the model, declared in one place.

Each rule has an id that appears in the response when it fires. A rule can only make the
decision stricter than the model's band (approve < review < decline), never looser. Rules are
written over arrays (one entry per application), so that the online service and batch scoring
apply the very same declarations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from creditflow.policy import DECISIONS

SEVERITY = {decision: rank for rank, decision in enumerate(DECISIONS)}
# Above this loan-to-income ratio an application goes to a person, whatever the score.
MAX_AUTOMATIC_LOAN_TO_INCOME = 0.6


class Facts:
    """What rules read: each feature over the applications, as float64 (NaN where missing) or,
    for categorical features, as objects; and which contract features were missing."""

    def __init__(
        self, columns: Mapping[str, Sequence[Any]], missing: np.ndarray, categorical=()
    ) -> None:
        self.columns = columns
        self.missing = missing  # [application, feature]: the store had no (fresh) value
        self.categorical = frozenset(categorical)

    def __getitem__(self, name: str) -> np.ndarray:
        dtype = object if name in self.categorical else np.float64
        return np.asarray(self.columns[name], dtype=dtype)

    @property
    def any_missing(self) -> np.ndarray:
        return self.missing.any(axis=1)


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    outcome: str  # "review" or "decline"
    fires: Callable[[Facts], np.ndarray]  # True for each application it fires on


RULES: tuple[Rule, ...] = (
    Rule("HARD_DECLINE_BANKRUPTCIES", "two or more bankruptcies on file", "decline",
         lambda f: f["bankruptcies"] >= 2),
    Rule("REVIEW_MISSING_FEATURES", "a contract feature is missing or stale in the store",
         "review", lambda f: f.any_missing),
    Rule("REVIEW_HIGH_LOAN_TO_INCOME",
         f"loan above {MAX_AUTOMATIC_LOAN_TO_INCOME:.0%} of yearly income", "review",
         lambda f: f["loan_to_income"] > MAX_AUTOMATIC_LOAN_TO_INCOME),
)  # fmt: skip
RULE_IDS = tuple(rule.id for rule in RULES)
_OUTCOMES = np.array(DECISIONS, dtype=object)  # by severity: an index of DECISIONS
_BANDS = np.array([f"band:{d}" for d in DECISIONS], dtype=object)  # by severity


def apply_rules(band_ranks: np.ndarray, facts: Facts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decisions, what decided each, fired[application, rule]), from the model's bands as
    indices of DECISIONS (``policy.band_ranks``).

    What decided it is ``band:<decision>`` when the model's band stands, or the id of the
    strictest rule that overrode it (the first declared, among equally strict ones).
    """
    severity = np.array(band_ranks, dtype=np.int64)  # a copy: raised by the rules below
    decided_by = _BANDS[severity]
    fired = np.zeros((len(severity), len(RULES)), dtype=bool)
    for index, rule in enumerate(RULES):
        fired[:, index] = rule.fires(facts)
        stricter = fired[:, index] & (SEVERITY[rule.outcome] > severity)
        severity[stricter] = SEVERITY[rule.outcome]
        decided_by[stricter] = rule.id
    return _OUTCOMES[severity], decided_by, fired
