"""The rule set's version, logged with every answer: a change of the rules changes it."""

from dataclasses import replace

from creditflow.postprocessing import rules
from creditflow.postprocessing.rules import RULES, RULES_VERSION, Rule, rules_version


def test_the_version_is_a_short_hash_of_this_rule_set():
    assert rules_version(RULES) == RULES_VERSION
    assert len(RULES_VERSION) == 12 and int(RULES_VERSION, 16) >= 0


def test_any_change_of_a_rule_changes_the_version():
    first, *others = RULES
    stricter = Rule(first.id, first.description, first.outcome,
                    lambda f: f["bankruptcies"] >= 1, needs=first.needs)  # fmt: skip
    changed = [
        (stricter, *others),  # the same rule, another test
        (replace(first, outcome="review"), *others),
        (replace(first, needs=()), *others),
        (replace(first, description="bankruptcies"), *others),
        tuple(others),  # a rule gone
        (*others, first),  # the order (the first declared decides among equals)
    ]
    versions = {rules_version(rule_set) for rule_set in changed}
    assert RULES_VERSION not in versions and len(versions) == len(changed)


def test_a_threshold_the_rules_read_is_part_of_the_version(monkeypatch):
    """REVIEW_HIGH_LOAN_TO_INCOME reads a module constant: its value counts, not its name."""
    monkeypatch.setattr(rules, "MAX_AUTOMATIC_LOAN_TO_INCOME", 0.5)
    assert rules_version(RULES) != RULES_VERSION
