"""The in-process scoring path: online features -> vector -> probability -> decision.

Kept apart from the HTTP layer so that it can be tested, benchmarked and reused (batch
scoring, other servers) without BentoML.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from creditflow.calibration import Calibration
from creditflow.encoding import RowEncoder
from creditflow.features import get_service, get_store
from creditflow.policy import decide
from creditflow.rules import apply_rules
from training.registry import LoadedModel

REASON_CODES = 3  # features reported as pushing the score up the most


@dataclass(frozen=True)
class Reason:
    feature: str
    value: Any
    contribution: float  # log-odds the feature added to this applicant's default score


@dataclass(frozen=True)
class Score:
    prediction_id: str
    model_tag: str
    default_probability: float
    decision: str
    decided_by: str  # "band:<decision>" or the id of the rule that overrode the band
    rules_fired: list[str]
    reasons: list[Reason]
    approve_below: float
    decline_at: float
    missing_features: list[str]
    features: dict[str, Any]  # the vector the model saw (logged, not returned)


class Scorer:
    """Scores loan applications with one model and the feature store it was trained on."""

    def __init__(self, model: LoadedModel, store: Any | None = None) -> None:
        self.model = model
        self.store = store or get_store()
        self.service = get_service(self.store, model.contract.service)
        self.encoder = RowEncoder(model.booster, model.contract)
        self.names = model.contract.names
        self.types = ["c" if n in model.contract.categorical else "q" for n in self.names]
        self.calibration = Calibration.from_metadata(model.metadata.get("calibration"))
        self.bands = model.metadata["decision_bands"]

    def store_reachable(self) -> bool:
        """Whether the online store answers: a lookup of one feature for a placeholder entity
        of the first batch feature view of the contract."""
        from feast.types import String

        try:
            for projection in self.service.feature_view_projections:
                try:
                    view = self.store.get_feature_view(projection.name)
                except Exception:  # an on-demand view: try the next projection
                    continue
                key = view.entity_columns[0]
                placeholder = "" if key.dtype == String else 0
                self.store.get_online_features(
                    features=[f"{view.name}:{view.features[0].name}"],
                    entity_rows=[{key.name: placeholder}],
                )
                return True
            return False
        except Exception:  # any store failure means not ready
            return False

    def online_features(self, applications: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """Feature values by name, one list entry per application, from the online store.

        The application fields travel as Feast request data, so the on-demand view computes
        request-time features exactly as it did for training.
        """
        response = self.store.get_online_features(features=self.service, entity_rows=applications)
        return response.to_dict()

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """XGBoost's exact per-feature contributions (log-odds), bias last; their sum is the
        model's margin, so one call gives both the score and its reasons."""
        data = xgb.DMatrix(matrix, feature_names=list(self.names), feature_types=self.types,
                           enable_categorical=True)  # fmt: skip
        return self.model.booster.predict(
            data, pred_contribs=True, iteration_range=self.model.iteration_range
        )

    def score(
        self, applications: list[dict[str, Any]], timings: dict[str, float] | None = None
    ) -> list[Score]:
        """Scores in the applications' order; ``timings`` receives the feature-lookup time."""
        started = time.perf_counter()
        columns = self.online_features(applications)
        if timings is not None:
            timings["feature_lookup"] = time.perf_counter() - started
        contributions = self.contributions(self.encoder.encode_columns(columns))
        raw = 1.0 / (1.0 + np.exp(-contributions.sum(axis=1, dtype=np.float64)))
        probabilities = self.calibration.apply(raw)
        scores = []
        for row, probability in enumerate(probabilities):
            features = {name: columns[name][row] for name in self.names}
            missing = [name for name, value in features.items() if value is None]
            decision, decided_by, fired = apply_rules(decide(probability, self.bands),
                                                      features, missing)  # fmt: skip
            top = np.argsort(-contributions[row, :-1])[:REASON_CODES]
            reasons = [
                Reason(self.names[i], features[self.names[i]], float(contributions[row, i]))
                for i in top
                if contributions[row, i] > 0
            ]
            scores.append(
                Score(
                    prediction_id=uuid.uuid4().hex,
                    model_tag=self.model.tag,
                    default_probability=float(probability),
                    decision=decision,
                    decided_by=decided_by,
                    rules_fired=fired,
                    reasons=reasons,
                    approve_below=self.bands["approve_below"],
                    decline_at=self.bands["decline_at"],
                    missing_features=missing,
                    features=features,
                )
            )
        return scores
