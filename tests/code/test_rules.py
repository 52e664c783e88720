"""Business rules: ids in the response, stricter than the band, never looser."""

import numpy as np

from creditflow.postprocessing.policy import DECISIONS
from creditflow.postprocessing.rules import (
    MAX_AUTOMATIC_LOAN_TO_INCOME,
    MAX_TRAINING_MISSING_SHARE,
    RULE_IDS,
    RULES,
    Facts,
    ModelRules,
    apply_rules,
)

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


def test_each_rule_reads_only_the_features_it_declares():
    """A rule reading an undeclared feature would fail models without it at request time."""
    for rule in RULES:
        columns = {name: [1.0] for name in rule.needs}
        rule.fires(Facts(columns, np.zeros((1, len(columns)), bool)))  # no KeyError


def test_rules_needing_features_a_model_lacks_do_not_apply_to_it():
    names = ("loan_to_income", "person_age")
    rules = ModelRules.for_model("application_only", names)
    assert "HARD_DECLINE_BANKRUPTCIES" not in rules.applicable
    assert rules.not_applicable == {
        "HARD_DECLINE_BANKRUPTCIES": "needs bankruptcies, not in application_only"
    }
    columns = {"loan_to_income": [0.9], "person_age": [30]}
    decisions, decided_by, fired = apply_rules(
        np.array([0]), Facts(columns, np.zeros((1, 2), bool)), rules.applicable
    )
    assert (decisions[0], decided_by[0]) == ("review", "REVIEW_HIGH_LOAN_TO_INCOME")
    assert not fired[0, RULE_IDS.index("HARD_DECLINE_BANKRUPTCIES")]


def test_older_models_get_their_rules_from_their_contract():
    meta = {"feature_service": "application_only", "feature_names": ["loan_to_income"]}
    assert ModelRules.from_metadata(meta).applicable == (
        "REVIEW_MISSING_FEATURES", "REVIEW_HIGH_LOAN_TO_INCOME",
    )  # fmt: skip
    assert ModelRules.from_metadata(meta).watched == ("loan_to_income",)
    stored = ModelRules.for_model("application_only", ["loan_to_income"]).to_metadata()
    stored["not_applicable"]["REVIEW_HIGH_LOAN_TO_INCOME"] = "switched off for this model"
    assert ModelRules.from_metadata({**meta, "rules": stored}).applicable == (
        "REVIEW_MISSING_FEATURES",
    )


def test_missing_counts_only_for_features_the_model_usually_had():
    shares = {"bankruptcies": MAX_TRAINING_MISSING_SHARE + 0.2, "credit_card_due": 0.01,
              "loan_to_income": 0.0}  # fmt: skip
    rules = ModelRules.for_model("credit", NAMES, shares)
    assert rules.watched == ("loan_to_income", "credit_card_due")
    columns = {"bankruptcies": [None, 0], "loan_to_income": [0.1, 0.1],
               "credit_card_due": [5.0, None]}  # fmt: skip
    missing = np.array([[True, False, False], [False, False, True]])
    facts = Facts(columns, missing, watched=rules.watched_mask(NAMES))
    decisions, decided_by, _ = apply_rules(np.array([0, 0]), facts, rules.applicable)
    # Missing bankruptcies: the model learned without them. Missing card dues: it did not.
    assert list(decided_by) == ["band:approve", "REVIEW_MISSING_FEATURES"]
