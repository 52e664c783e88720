"""Business rules applied after the model, declared in one place.

Each rule has an id that appears in the response when it fires. A rule can only make the
decision stricter than the model's band (approve < review < decline), never looser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from creditflow.policy import DECISIONS

SEVERITY = {decision: rank for rank, decision in enumerate(DECISIONS)}
# Above this loan-to-income ratio an application goes to a person, whatever the score.
MAX_AUTOMATIC_LOAN_TO_INCOME = 0.6


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    outcome: str  # "review" or "decline"
    fires: Callable[[dict[str, Any], list[str]], bool]  # (features, missing feature names)


def _at_least(name: str, limit: float) -> Callable[[dict[str, Any], list[str]], bool]:
    return lambda features, _missing: (features.get(name) or 0) >= limit


RULES: tuple[Rule, ...] = (
    Rule("HARD_DECLINE_BANKRUPTCIES", "two or more bankruptcies on file", "decline",
         _at_least("bankruptcies", 2)),
    Rule("REVIEW_MISSING_FEATURES", "a contract feature is missing or stale in the store",
         "review", lambda _features, missing: bool(missing)),
    Rule("REVIEW_HIGH_LOAN_TO_INCOME",
         f"loan above {MAX_AUTOMATIC_LOAN_TO_INCOME:.0%} of yearly income", "review",
         lambda features, _missing: (features.get("loan_to_income") or 0)
         > MAX_AUTOMATIC_LOAN_TO_INCOME),
)  # fmt: skip


def apply_rules(
    band_decision: str, features: dict[str, Any], missing: list[str]
) -> tuple[str, str, list[str]]:
    """(decision, what decided it, ids of the rules that fired).

    What decided it is ``band:<decision>`` when the model's band stands, or the id of the
    strictest rule that overrode it.
    """
    fired = [rule for rule in RULES if rule.fires(features, missing)]
    decision, decided_by = band_decision, f"band:{band_decision}"
    for rule in fired:
        if SEVERITY[rule.outcome] > SEVERITY[decision]:
            decision, decided_by = rule.outcome, rule.id
    return decision, decided_by, [rule.id for rule in fired]
