"""The in-process scoring path: online features -> vector -> probability -> decision.

Kept apart from the HTTP layer so that it can be tested, benchmarked and reused (batch
scoring, other servers) without BentoML.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from creditflow.calibration import Calibration
from creditflow.encoding import RowEncoder
from creditflow.features import get_service, get_store
from creditflow.policy import decide
from training.registry import LoadedModel


@dataclass(frozen=True)
class Score:
    prediction_id: str
    model_tag: str
    default_probability: float
    decision: str
    approve_below: float
    decline_at: float
    missing_features: list[str]


class Scorer:
    """Scores loan applications with one model and the feature store it was trained on."""

    def __init__(self, model: LoadedModel, store: Any | None = None) -> None:
        self.model = model
        self.store = store or get_store()
        self.service = get_service(self.store, model.contract.service)
        self.encoder = RowEncoder(model.booster, model.contract)
        self.names = model.contract.names
        self.calibration = Calibration.from_metadata(model.metadata.get("calibration"))
        self.bands = model.metadata["decision_bands"]

    def online_features(self, applications: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """Feature values by name, one list entry per application, from the online store.

        The application fields travel as Feast request data, so the on-demand view computes
        request-time features exactly as it did for training.
        """
        response = self.store.get_online_features(features=self.service, entity_rows=applications)
        return response.to_dict()

    def score(self, applications: list[dict[str, Any]]) -> list[Score]:
        columns = self.online_features(applications)
        matrix = self.encoder.encode_columns(columns)
        raw = self.model.booster.inplace_predict(matrix, iteration_range=self.model.iteration_range)
        probabilities = self.calibration.apply(np.asarray(raw, dtype=float))
        scores = []
        for row, probability in enumerate(probabilities):
            missing = [name for name in self.names if columns[name][row] is None]
            scores.append(
                Score(
                    prediction_id=uuid.uuid4().hex,
                    model_tag=self.model.tag,
                    default_probability=float(probability),
                    decision=decide(probability, self.bands),
                    approve_below=self.bands["approve_below"],
                    decline_at=self.bands["decline_at"],
                    missing_features=missing,
                )
            )
        return scores
