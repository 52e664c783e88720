"""Business rules applied after the model, declared in one place.

Each rule has an id that appears in the response when it fires. A rule can only make the
decision stricter than the model's band (approve < review < decline), never looser. Rules are
written over arrays (one entry per application), so that the online service and batch scoring
apply the very same declarations.

A rule declares the features it reads (``needs``). Training records in the model's metadata
which rules apply to it (``ModelRules``): a model whose FeatureService lacks a needed feature
does not apply that rule (reported at training), instead of failing every request.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from creditflow.postprocessing.policy import DECISIONS

SEVERITY = {decision: rank for rank, decision in enumerate(DECISIONS)}
# Above this loan-to-income ratio an application goes to a person, whatever the score.
MAX_AUTOMATIC_LOAN_TO_INCOME = 0.6
# A feature missing now sends an application to review only if the model usually had it: missing
# in at most this share of its training rows. Training warns about the features missing more
# often (a source older than its view's TTL, or a broken one): the model learned without them.
MAX_TRAINING_MISSING_SHARE = 0.5


class Facts:
    """What rules read: each feature over the applications, as float64 (NaN where missing) or,
    for categorical features, as objects; which contract features were missing; and which of
    them count as missing for the model (``watched``: those it usually had in training)."""

    def __init__(
        self,
        columns: Mapping[str, Sequence[Any]],
        missing: np.ndarray,
        categorical: Collection[str] = (),
        watched: np.ndarray | None = None,
    ) -> None:
        self.columns = columns
        self.missing = missing  # [application, feature]: the store had no (fresh) value
        self.categorical = frozenset(categorical)
        # [feature]: its absence matters; None: every feature's does
        self.watched = watched

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise KeyError(f"no feature {name!r} among the model's features: declare it in the "
                           "rule's needs, so models without it do not apply the rule")  # fmt: skip
        dtype = object if name in self.categorical else np.float64
        return np.asarray(self.columns[name], dtype=dtype)

    @property
    def watched_missing(self) -> np.ndarray:
        """Per application: is a feature the model usually had missing?"""
        missing = self.missing if self.watched is None else self.missing[:, self.watched]
        return missing.any(axis=1)


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    outcome: str  # "review" or "decline"
    fires: Callable[[Facts], np.ndarray]  # True for each application it fires on
    needs: tuple[str, ...] = ()  # the features it reads: a model without them cannot apply it


RULES: tuple[Rule, ...] = (
    Rule("HARD_DECLINE_BANKRUPTCIES", "two or more bankruptcies on file", "decline",
         lambda f: f["bankruptcies"] >= 2, needs=("bankruptcies",)),
    Rule("REVIEW_MISSING_FEATURES",
         "a feature the model usually had in training is missing or stale in the store",
         "review", lambda f: f.watched_missing),
    Rule("REVIEW_HIGH_LOAN_TO_INCOME",
         f"loan above {MAX_AUTOMATIC_LOAN_TO_INCOME:.0%} of yearly income", "review",
         lambda f: f["loan_to_income"] > MAX_AUTOMATIC_LOAN_TO_INCOME, needs=("loan_to_income",)),
)  # fmt: skip
RULE_IDS = tuple(rule.id for rule in RULES)
_BY_ID = {rule.id: rule for rule in RULES}


def _test_of(rule: Rule) -> dict[str, Any]:
    """A rule's test as declared: its source text (its compiled code when the source is not
    shipped) and the values of the module's constants it reads (a threshold)."""
    code = rule.fires.__code__
    try:
        text = " ".join(inspect.getsource(rule.fires).split())
    except (OSError, TypeError):
        text = code.co_code.hex() + repr(code.co_consts)
    names = rule.fires.__globals__
    reads = {name: names[name] for name in code.co_names
             if isinstance(names.get(name), int | float | str)}  # fmt: skip
    return {"source": text, "reads": reads}


def rules_version(rules: Sequence[Rule] = RULES) -> str:
    """A short hash of a rule set's declarations: each rule's id, outcome, description, needs
    and test (:func:`_test_of`), in order, with the decisions' order and the missing-share
    limit. Logged with every answer, so that a decision can be explained later: changing,
    adding or reordering a rule changes it (so may reformatting its test's line)."""
    declared = {
        "rules": [{"id": r.id, "outcome": r.outcome, "description": r.description,
                   "needs": list(r.needs), "test": _test_of(r)} for r in rules],
        "decisions": list(DECISIONS),
        "max_training_missing_share": MAX_TRAINING_MISSING_SHARE,
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()
    return digest[:12]


# This process's rule set, hashed once.
RULES_VERSION = rules_version()


@dataclass(frozen=True)
class ModelRules:
    """Which rules one model applies, and which features' absence sends to review.

    Decided at training from the model's FeatureService and training rows and stored in its
    metadata: a rule never reads a feature the model lacks, and the missing-features rule
    ignores features the model learned without (mostly missing in its training rows).
    """

    applicable: tuple[str, ...]  # rule ids, in the order of RULES
    not_applicable: dict[str, str] = field(default_factory=dict)  # rule id -> why
    watched: tuple[str, ...] = ()  # features whose absence fires REVIEW_MISSING_FEATURES

    @classmethod
    def for_model(
        cls,
        service: str,
        names: Sequence[str],
        training_missing_share: Mapping[str, float] | None = None,
    ) -> ModelRules:
        """The rules a model on these features can apply; with the training missing shares,
        only features missing in at most MAX_TRAINING_MISSING_SHARE of rows are watched
        (without them, every feature is, as before models recorded them)."""
        applicable, not_applicable = [], {}
        for rule in RULES:
            lacking = [name for name in rule.needs if name not in names]
            if lacking:
                not_applicable[rule.id] = f"needs {', '.join(lacking)}, not in {service}"
            else:
                applicable.append(rule.id)
        shares = training_missing_share
        watched = tuple(
            name for name in names
            if shares is None or shares.get(name, 0.0) <= MAX_TRAINING_MISSING_SHARE
        )  # fmt: skip
        return cls(tuple(applicable), not_applicable, watched)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ModelRules:
        """A stored model's rules. Models trained before rules were recorded get them derived
        from their contract; a rule declared since is judged by its needs, and a rule's needs
        are checked again here, so no rule can read a feature the model lacks."""
        names = list(metadata["feature_names"])
        derived = cls.for_model(
            metadata["feature_service"], names, metadata.get("training_missing_share")
        )
        stored = metadata.get("rules")
        if stored is None:
            return derived
        excluded = {**stored.get("not_applicable", {}), **derived.not_applicable}
        watched = stored.get("missing_watched", names)
        return cls(
            tuple(rule_id for rule_id in derived.applicable if rule_id not in excluded),
            {rule_id: why for rule_id, why in excluded.items() if rule_id in _BY_ID},
            tuple(name for name in names if name in watched),
        )

    def to_metadata(self) -> dict:
        return {
            "applicable": list(self.applicable),
            "not_applicable": dict(self.not_applicable),
            "missing_watched": list(self.watched),
            "max_training_missing_share": MAX_TRAINING_MISSING_SHARE,
        }

    def watched_mask(self, names: Sequence[str]) -> np.ndarray:
        """[feature] in ``names`` order: True where its absence fires REVIEW_MISSING_FEATURES."""
        watched = set(self.watched)
        return np.array([name in watched for name in names], dtype=bool)


_OUTCOMES = np.array(DECISIONS, dtype=object)  # by severity: an index of DECISIONS
_BANDS = np.array([f"band:{d}" for d in DECISIONS], dtype=object)  # by severity


def apply_rules(
    band_ranks: np.ndarray, facts: Facts, applicable: Collection[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(decisions, what decided each, fired[application, rule]), from the model's bands as
    indices of DECISIONS (``policy.band_ranks``).

    What decided it is ``band:<decision>`` when the model's band stands, or the id of the
    strictest rule that overrode it (the first declared, among equally strict ones). Only the
    ``applicable`` rules (ids; None: all) are applied; the others never fire.
    """
    severity = np.array(band_ranks, dtype=np.int64)  # a copy: raised by the rules below
    decided_by = _BANDS[severity]
    fired = np.zeros((len(severity), len(RULES)), dtype=bool)
    for index, rule in enumerate(RULES):
        if applicable is not None and rule.id not in applicable:
            continue
        fired[:, index] = rule.fires(facts)
        stricter = fired[:, index] & (SEVERITY[rule.outcome] > severity)
        severity[stricter] = SEVERITY[rule.outcome]
        decided_by[stricter] = rule.id
    return _OUTCOMES[severity], decided_by, fired
