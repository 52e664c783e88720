"""From feature values to answers: model, calibration, decision bands, business rules, reasons.

One implementation, vectorised over applications, for every path: /predict (one row),
/predict_batch and `creditflow score-batch` (a million rows). Only where the feature values come
from differs (the online store, or the offline store's point-in-time join).

Reason codes are XGBoost's own per-row contributions in their approximate form
(``approx_contribs``: each split's change in expected value along the row's path). Like the
exact SHAP values they add up to the model's margin, at a tenth of their cost
(docs/benchmarks.md). They are computed for the applications the model does not approve: those
are the answers that must be explained (adverse-action reasons), and an approval costs no extra
call. A feature the store did not have is never a reason: it is reported as missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from creditflow.config import get_settings
from creditflow.model.booster_calls import PublicCalls, TreeEvaluator, booster_calls
from creditflow.model.leaf_tables import FEW_ROWS, LeafTables, leaf_tables
from creditflow.postprocessing import exploration
from creditflow.postprocessing.calibration import Calibration
from creditflow.postprocessing.policy import DECISIONS, band_ranks
from creditflow.postprocessing.rules import RULE_IDS, Facts, ModelRules, apply_rules
from creditflow.preprocessing.encoding import MANY_ROWS, RowEncoder

if TYPE_CHECKING:
    from creditflow.model.registry import LoadedModel

REASON_CODES = 3  # features reported as pushing the score up the most


@dataclass(frozen=True)
class Answers:
    """The answers for n applications, as columns."""

    probability: np.ndarray  # calibrated default probability, float64 [n]
    decision: np.ndarray  # approve / review / decline [n]
    decided_by: np.ndarray  # "band:<decision>" or the id of the rule that overrode it [n]
    fired: np.ndarray  # bool [n, rule]: which business rules fired (order of RULE_IDS)
    missing: np.ndarray  # bool [n, feature]: no value in the store, or older than its TTL
    reason_index: np.ndarray  # int [n, REASON_CODES]: feature index, -1 for none
    reason_contribution: np.ndarray  # float [n, REASON_CODES]: log-odds, NaN for none
    # bool [n]: approved by the exploration policy (postprocessing/exploration.py); None: the
    # policy was not asked (no prediction ids)
    explored: np.ndarray | None = None

    def rules_fired(self, row: int) -> list[str]:
        return [RULE_IDS[i] for i in np.flatnonzero(self.fired[row])]


class Predictor:
    """Scores feature values with one stored model and the post-processing stored with it."""

    def __init__(
        self,
        model: LoadedModel,
        fast_paths: bool | None = None,
        exploration_share: float | None = None,
    ) -> None:
        """``fast_paths``: XGBoost's C calls and the leaf tables, each checked against the public
        API when loaded (default: the ``CREDITFLOW_FAST_PATHS`` setting); False: public API only.
        ``exploration_share``: of review-band applications approved (default: the setting)."""
        self.model = model
        settings = get_settings()
        self.fast_paths = settings.fast_paths if fast_paths is None else fast_paths
        if exploration_share is None:
            exploration_share = exploration.exploration_share(settings)
        self.exploration_share = exploration_share
        self.names = model.contract.names
        self.categorical = model.contract.categorical
        self.categorical_columns = [
            (index, name) for index, name in enumerate(self.names) if name in self.categorical
        ]
        self.encoder = RowEncoder(model.booster, model.contract)
        self.public = PublicCalls(model.booster, model.iteration_range, model.nthread)
        self.calls = (booster_calls(model.booster, model.iteration_range, model.nthread)
                      if self.fast_paths else self.public)  # fmt: skip
        self.calibration = Calibration.from_metadata(model.metadata.get("calibration"))
        self.bands = model.metadata["decision_bands"]
        # Only the rules this model can apply, and the features whose absence matters to it.
        self.rules = ModelRules.from_metadata(model.metadata)
        self.watched = self.rules.watched_mask(self.names)

    def missing(self, columns: Mapping[str, Sequence[Any]], matrix: np.ndarray) -> np.ndarray:
        """Which values the store did not have. A numeric feature is NaN in the matrix only
        when missing; a categorical one is also NaN for a category the model never saw."""
        missing = np.isnan(matrix)
        few = len(matrix) <= MANY_ROWS  # a few rows: a Python test beats pandas' setup
        for index, name in self.categorical_columns:
            column = columns[name]
            missing[:, index] = (
                [v is None or v != v for v in column]  # None, or NaN (v != v)
                if few
                else pd.isna(np.asarray(column, dtype=object))
            )
        return missing

    @cached_property
    def tables(self) -> LeafTables | None:
        """Built on first use (0.1-0.2 s here): a batch of many rows never needs them. Checked
        against XGBoost's public API; None without fast paths."""
        if not self.fast_paths:
            return None
        return leaf_tables(self.model.booster, self.model.iteration_range, self.public)

    def trees(self, rows: int) -> LeafTables | TreeEvaluator:
        """Who evaluates the trees: the leaf tables for a few rows, where XGBoost's per-call
        setup would dominate, else XGBoost (model/leaf_tables.py)."""
        few = rows <= FEW_ROWS and self.tables is not None
        return self.tables if few else self.calls

    @staticmethod
    def reasons(contributions: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The features that raised each row's score most: (indices, contributions).

        Only features with a value are reasons. A missing one can carry a large contribution
        (the trees' default direction), but "state: null" explains nothing to a person: it is
        reported in the missing features instead, where the missing-features rule sees it."""
        contributions = contributions[:, :-1]  # the last column is the bias
        contributions = np.where(missing, -np.inf, contributions)
        top = np.argsort(-contributions, axis=1, kind="stable")[:, :REASON_CODES]
        values = np.take_along_axis(contributions, top, axis=1).astype(np.float64)
        raised = values > 0
        return np.where(raised, top, -1), np.where(raised, values, np.nan)

    def predict(
        self,
        columns: Mapping[str, Sequence[Any]],
        prediction_ids: Sequence[str] | None = None,
    ) -> Answers:
        """Answers for the applications whose contract feature values are given as columns.

        With ``prediction_ids`` (one per application) the exploration policy applies: the same
        ids give the same answers on every path. Without them it does not (``explored`` None)."""
        matrix = self.encoder.encode_columns(columns)
        margin, contributions = self.trees(len(matrix)).evaluate(matrix)
        raw = 1.0 / (1.0 + np.exp(-margin.astype(np.float64)))
        probability = self.calibration.apply(raw)
        missing = self.missing(columns, matrix)
        facts = Facts(columns, missing, self.categorical, self.watched)
        ranks = band_ranks(probability, self.bands)
        decision, decided_by, fired = apply_rules(ranks, facts, self.rules.applicable)
        explored = None
        if prediction_ids is not None:
            explored = exploration.explore(decision, decided_by, fired, prediction_ids,
                                           self.exploration_share)  # fmt: skip
        n = len(probability)
        reason_index = np.full((n, REASON_CODES), -1, dtype=np.int64)
        reason_contribution = np.full((n, REASON_CODES), np.nan)
        explain = np.flatnonzero(decision != DECISIONS[0])  # all but approvals
        if len(explain):
            explained = self.reasons(contributions(explain), missing[explain])
            reason_index[explain], reason_contribution[explain] = explained
        return Answers(probability, decision, decided_by, fired, missing, reason_index,
                       reason_contribution, explored)  # fmt: skip
