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

from creditflow.contract import EXAMPLE_APPLICATION
from creditflow.model.registry import LoadedModel
from creditflow.postprocessing.policy import DECISIONS
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
    explored: bool = False  # approved by the exploration policy (decided_by "exploration")


class Scorer:
    """Scores loan applications with one model and the feature store it was trained on."""

    def __init__(
        self, model: LoadedModel, store: Any | None = None, exploration_share: float | None = None
    ) -> None:
        """``store``: a Feast FeatureStore (default: the home's); ``exploration_share``: see
        postprocessing/exploration.py (default: the setting)."""
        self.model = model
        self.store = store or get_store()
        self.predictor = Predictor(model, exploration_share=exploration_share)
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

    def self_check(self) -> None:
        """Scores the contract's example application end to end (online read, model,
        post-processing): raises unless the answer is a probability and a known decision. What
        a model must pass before the service swaps to it (bento/model_watch.py)."""
        (score,) = self.score([dict(EXAMPLE_APPLICATION)], prediction_ids=["self-check"])
        if not 0.0 <= score.default_probability <= 1.0:  # NaN fails too
            raise ValueError(f"{self.model.tag}: self-check probability "
                             f"{score.default_probability!r} is not in [0, 1]")  # fmt: skip
        if score.decision not in DECISIONS:
            raise ValueError(f"{self.model.tag}: self-check decision {score.decision!r}")

    def score(
        self,
        applications: list[dict[str, Any]],
        timings: dict[str, float] | None = None,
        prediction_ids: list[str] | None = None,
    ) -> list[Score]:
        """Scores in the applications' order; ``timings`` receives the feature-lookup time.
        ``prediction_ids``: the answers' ids (default: new ones); the exploration policy draws
        from them, so the same ids give the same answers on every path."""
        started = time.perf_counter()
        columns = self.online_features(applications)
        if timings is not None:
            timings["feature_lookup"] = time.perf_counter() - started
        if prediction_ids is None:
            prediction_ids = [uuid.uuid4().hex for _ in applications]
        elif len(prediction_ids) != len(applications):
            raise ValueError(f"{len(prediction_ids)} prediction ids for "
                             f"{len(applications)} applications")  # fmt: skip
        answers = self.predictor.predict(columns, prediction_ids)
        explored = answers.explored
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
                    prediction_id=prediction_ids[row],
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
                    explored=bool(explored[row]),
                )
            )
        return scores
