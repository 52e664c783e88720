"""The in-process online scoring path: online features -> vector -> model -> post-processing.

Kept apart from the HTTP layer so that it can be tested, benchmarked and reused without
BentoML. The feature values come from the online store (``creditflow/store/service_features.py``);
everything after that is ``postprocessing/predict.py``, shared with batch scoring.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from creditflow.model.registry import LoadedModel
from creditflow.postprocessing.predict import Predictor
from creditflow.store.features import get_store
from creditflow.store.service_features import ServiceFeatures


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
        self.predictor = Predictor(model)
        self.predictor.tables  # built now, not by the first request  # noqa: B018
        self.features = ServiceFeatures(self.store, model.contract.service)
        self.names = model.contract.names

    def store_reachable(self) -> bool:
        """Whether the online store answers a lookup (of a placeholder entity, every view)."""
        try:
            self.features.probe()
            return True
        except Exception:  # any store failure means not ready
            return False

    def online_features(self, applications: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """Contract feature values by name, one entry per application, from the online store.

        The application fields travel as Feast request data, so the on-demand view computes
        request-time features exactly as it did for training.
        """
        return self.features.read(applications)

    def score(
        self, applications: list[dict[str, Any]], timings: dict[str, float] | None = None
    ) -> list[Score]:
        """Scores in the applications' order; ``timings`` receives the feature-lookup time."""
        started = time.perf_counter()
        columns = self.online_features(applications)
        if timings is not None:
            timings["feature_lookup"] = time.perf_counter() - started
        answers = self.predictor.predict(columns)
        bands = self.predictor.bands
        names = self.names
        scores = []
        for row in range(len(applications)):
            features = {name: columns[name][row] for name in names}
            reasons = [
                Reason(names[i], features[names[i]], float(c))
                for i, c in zip(
                    answers.reason_index[row], answers.reason_contribution[row], strict=True
                )  # fmt: skip
                if i >= 0
            ]
            scores.append(
                Score(
                    prediction_id=uuid.uuid4().hex,
                    model_tag=self.model.tag,
                    default_probability=float(answers.probability[row]),
                    decision=answers.decision[row],
                    decided_by=answers.decided_by[row],
                    rules_fired=answers.rules_fired(row),
                    reasons=reasons,
                    approve_below=bands["approve_below"],
                    decline_at=bands["decline_at"],
                    missing_features=[
                        n for n, m in zip(names, answers.missing[row], strict=True) if m
                    ],  # fmt: skip
                    features=features,
                )
            )
        return scores
