"""The scoring service: one BentoML class, the request model comes from the data contract."""

from __future__ import annotations

from typing import Any

import bentoml
from pydantic import BaseModel, Field

from bento.scoring import Scorer
from creditflow.config import MODEL_NAME, export_environment
from ingestion.contract import APPLICATION_COLUMNS, DOB_SSN, ZIPCODE, request_model
from training.promotion import champion_tag
from training.registry import from_stored

export_environment()

LoanApplication = request_model("LoanApplication", (DOB_SSN, ZIPCODE, *APPLICATION_COLUMNS))


class Prediction(BaseModel):
    prediction_id: str
    model_tag: str
    default_probability: float = Field(ge=0, le=1)
    decision: str = Field(description="approve, review or decline")
    approve_below: float = Field(
        description="calibrated default probability below which we approve"
    )
    decline_at: float = Field(description="calibrated default probability from which we decline")
    missing_features: list[str] = Field(description="contract features the store did not have")


def _champion() -> str:
    tag = champion_tag()
    if tag is None:
        raise RuntimeError(
            f"no champion {MODEL_NAME} model: run `creditflow train` then `creditflow promote`"
        )
    return tag


@bentoml.service(name="creditflow", workers=1, traffic={"timeout": 10})
class CreditScorer:
    # The champion at import time; a built bento pins the champion it was built with.
    model_ref = bentoml.models.BentoModel(_champion())

    def __init__(self) -> None:
        self.scorer = Scorer(from_stored(self.model_ref))

    @bentoml.api(route="/predict", input_spec=LoanApplication)
    def predict(self, **application: Any) -> Prediction:
        """Default probability and decision for one loan application."""
        score = self.scorer.score([application])[0]
        return Prediction(**score.__dict__)
