"""Business rules: ids in the response, stricter than the band, never looser."""

import numpy as np

from creditflow.policy import DECISIONS
from creditflow.rules import MAX_AUTOMATIC_LOAN_TO_INCOME, RULE_IDS, RULES, Facts, apply_rules

NAMES = ("bankruptcies", "loan_to_income", "credit_card_due")


def _apply(band: str, bankruptcies=0, loan_to_income=0.1, missing=()):
    """The rules on one application, as (decision, decided_by, fired ids)."""
    columns = {"bankruptcies": [bankruptcies], "loan_to_income": [loan_to_income],
               "credit_card_due": [None if "credit_card_due" in missing else 100.0]}  # fmt: skip
    flags = np.array([[name in missing for name in NAMES]])
    band_rank = np.array([DECISIONS.index(band)])
    decisions, decided_by, fired = apply_rules(band_rank, Facts(columns, flags))
    return decisions[0], decided_by[0], [RULE_IDS[i] for i in np.flatnonzero(fired[0])]


def test_rule_ids_are_unique_and_outcomes_known():
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    assert {rule.outcome for rule in RULES} <= {"review", "decline"}


def test_the_band_stands_when_no_rule_fires():
    assert _apply("approve") == ("approve", "band:approve", [])


def test_bankruptcies_force_a_decline():
    assert _apply("approve", bankruptcies=2) == (
        "decline", "HARD_DECLINE_BANKRUPTCIES", ["HARD_DECLINE_BANKRUPTCIES"],
    )  # fmt: skip


def test_missing_features_and_high_loan_to_income_send_to_review():
    assert _apply("approve", missing=("credit_card_due",))[:2] == (
        "review", "REVIEW_MISSING_FEATURES",
    )  # fmt: skip
    high = MAX_AUTOMATIC_LOAN_TO_INCOME + 0.01
    assert _apply("approve", loan_to_income=high)[:2] == ("review", "REVIEW_HIGH_LOAN_TO_INCOME")
    assert _apply("approve", loan_to_income=MAX_AUTOMATIC_LOAN_TO_INCOME)[0] == "approve"


def test_missing_values_do_not_fire_value_rules():
    assert _apply("approve", bankruptcies=None, missing=("bankruptcies",))[2] == [
        "REVIEW_MISSING_FEATURES"
    ]


def test_a_rule_never_loosens_the_band():
    decision, by, fired = _apply("decline", missing=("credit_card_due",))
    assert (decision, by) == ("decline", "band:decline")
    assert fired == ["REVIEW_MISSING_FEATURES"]  # it fired, and says so, but did not decide


def test_rows_are_decided_independently():
    columns = {"bankruptcies": [0, 3, 0], "loan_to_income": [0.1, 0.1, 0.9]}
    decisions, decided_by, _ = apply_rules(
        np.array([0, 1, 0]), Facts(columns, np.zeros((3, 2), bool))
    )
    assert list(decisions) == ["approve", "decline", "review"]
    assert list(decided_by) == ["band:approve", "HARD_DECLINE_BANKRUPTCIES",
                                "REVIEW_HIGH_LOAN_TO_INCOME"]  # fmt: skip
