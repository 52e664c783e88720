"""Business rules: ids in the response, stricter than the band, never looser."""

from creditflow.rules import MAX_AUTOMATIC_LOAN_TO_INCOME, RULES, apply_rules

CLEAN = {"bankruptcies": 0, "loan_to_income": 0.1}


def test_rule_ids_are_unique_and_outcomes_known():
    ids = [rule.id for rule in RULES]
    assert len(ids) == len(set(ids))
    assert {rule.outcome for rule in RULES} <= {"review", "decline"}


def test_the_band_stands_when_no_rule_fires():
    assert apply_rules("approve", CLEAN, []) == ("approve", "band:approve", [])


def test_bankruptcies_force_a_decline():
    decision, by, fired = apply_rules("approve", {**CLEAN, "bankruptcies": 2}, [])
    assert (decision, by, fired) == ("decline", "HARD_DECLINE_BANKRUPTCIES",
                                     ["HARD_DECLINE_BANKRUPTCIES"])  # fmt: skip


def test_missing_features_and_high_loan_to_income_send_to_review():
    assert apply_rules("approve", CLEAN, ["credit_card_due"])[:2] == (
        "review", "REVIEW_MISSING_FEATURES",
    )  # fmt: skip
    high = {**CLEAN, "loan_to_income": MAX_AUTOMATIC_LOAN_TO_INCOME + 0.01}
    assert apply_rules("approve", high, [])[:2] == ("review", "REVIEW_HIGH_LOAN_TO_INCOME")


def test_a_rule_never_loosens_the_band():
    decision, by, fired = apply_rules("decline", CLEAN, ["credit_card_due"])
    assert (decision, by) == ("decline", "band:decline")
    assert fired == ["REVIEW_MISSING_FEATURES"]  # it fired, and says so, but did not decide
