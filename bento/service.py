"""The scoring service: one BentoML class, the request model comes from the data contract."""

from __future__ import annotations

import functools
import gc
import time
from datetime import UTC, datetime
from http import HTTPStatus
from importlib.metadata import version
from typing import Any, ClassVar

import bentoml
from bentoml.exceptions import BentoMLException
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route

from creditflow.applicant_keys import home_entity_hasher
from creditflow.bento.metrics_dir import own_metrics_dir
from creditflow.bento.microbatch import MicroBatcher
from creditflow.bento.middleware import ClientErrors, install_log_filter
from creditflow.bento.prediction_log import PredictionLog
from creditflow.bento.scoring import Score, Scorer
from creditflow.config import export_environment, get_settings
from creditflow.contract import APPLICATIONS, request_model
from creditflow.db import get_engine, serve_without_migrating
from creditflow.migrate import schema_ready
from creditflow.model.registry import from_stored
from creditflow.model.stages import require_champion

export_environment()
_settings = get_settings()
# Each server its own /metrics files: a second start on this home cannot blank ours.
if _settings.own_metrics_dir:
    own_metrics_dir(_settings.bentoml_home)
# Before anything reads our tables (the champion, below): this process never migrates them.
serve_without_migrating()

PREDICT_BATCH = 64  # most concurrent /predict requests scored in one call

LoanApplication = request_model("LoanApplication", APPLICATIONS.columns)


class ReasonCode(BaseModel):
    feature: str
    value: float | int | str | None
    contribution: float = Field(description="log-odds this feature added to the default score")


class Prediction(BaseModel):
    # BentoML asks every response for this; without it pydantic's slow missing-attribute path
    # (an exception raised and caught) ran once per /predict.
    multipart_fields: ClassVar[tuple[str, ...]] = ()

    prediction_id: str
    model_tag: str
    default_probability: float = Field(ge=0, le=1, description="calibrated")
    decision: str = Field(description="approve, review or decline")
    decided_by: str = Field(description="band:<decision>, or the id of the rule that overrode it")
    rules_fired: list[str] = Field(description="ids of the business rules that fired")
    reasons: list[ReasonCode] = Field(
        description="for a review or decline: the features that raised the score most"
    )
    approve_below: float = Field(description="calibrated probability below which we approve")
    decline_at: float = Field(description="calibrated probability from which we decline")
    missing_features: list[str] = Field(description="contract features the store did not have")


class BatchTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class ApplicationBatch(BaseModel):
    applications: list[LoanApplication] = Field(  # type: ignore[valid-type]
        min_length=1, description="at most CREDITFLOW_MAX_BATCH items (this server's: maxItems)"
    )


_ANSWERED = tuple(name for name in Prediction.model_fields if name != "reasons")


def _prediction(score: Score) -> Prediction:
    """The response: the score's fields that the API declares (not the logged feature vector)."""
    fields = {name: getattr(score, name) for name in _ANSWERED}
    reasons = [ReasonCode(feature=r.feature, value=r.value, contribution=r.contribution)
               for r in score.reasons]  # fmt: skip
    return Prediction(**fields, reasons=reasons)


# prometheus_client directly, as BentoML 1.4 asks (bentoml.metrics is deprecated): its workers
# start with PROMETHEUS_MULTIPROC_DIR set, and /metrics collects from there.
REQUEST_SECONDS = Histogram(
    name="creditflow_request_seconds",
    documentation="Scoring time per request, by endpoint (in-process, without HTTP)",
    labelnames=["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
LOOKUP_SECONDS = Histogram(
    name="creditflow_feature_lookup_seconds",
    documentation="Online feature lookup time per request",
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1),
)
SCORES = Histogram(
    name="creditflow_default_probability",
    documentation="Calibrated default probabilities served",
    buckets=tuple(i / 10 for i in range(1, 11)),
)
DECISIONS = Counter(
    name="creditflow_decisions",
    documentation="Decisions served, by outcome and by what decided them",
    labelnames=["decision", "decided_by"],
)
BATCH_SIZE = Histogram(
    name="creditflow_predict_batch_size",
    documentation="Concurrent /predict requests scored together (bento/microbatch.py)",
    buckets=tuple(2**i for i in range(PREDICT_BATCH.bit_length())),  # 1, 2, 4, ... 64
)
MISSING = Counter(
    name="creditflow_missing_features",
    documentation="Contract features the online store did not have, by feature",
    labelnames=["feature"],
)
REJECTED = Counter(
    name="creditflow_rejected_requests",
    documentation="4xx answers, by endpoint and by each field the answer names (_body: none; "
    "_other: not a contract field); counted by bento/middleware.py",
    labelnames=["endpoint", "field"],
)
# Each labelled child looked up once: ``labels()`` takes a lock and builds a key every call.
_decisions = functools.cache(
    lambda decision, by: DECISIONS.labels(decision=decision, decided_by=by)
)
_request_seconds = functools.cache(lambda endpoint: REQUEST_SECONDS.labels(endpoint=endpoint))
# Bounded: the middleware names only our endpoints and the contract's fields (else _other).
_rejected = functools.cache(lambda endpoint, field: REJECTED.labels(endpoint=endpoint, field=field))


# BentoML serves the Swagger UI at / and the spec at /docs.json; /docs leads to the UI.
_docs = Starlette(routes=[Route("/", lambda _: RedirectResponse("/", status_code=307))])


@bentoml.asgi_app(_docs, path="/docs")
@bentoml.service(name="creditflow", workers=1, traffic={"timeout": 10})
class CreditScorer:
    # The champion at import time; a built bento pins the champion it was built with.
    model_ref = bentoml.models.BentoModel(require_champion())

    def __init__(self) -> None:
        settings = get_settings()
        self.scorer = Scorer(from_stored(self.model_ref))
        self.max_batch = settings.max_batch
        self.entity_hash = home_entity_hasher(settings)
        self.engine = get_engine(settings)  # not migrated here: see __is_ready__
        self.schema_at_head = False
        self.log = PredictionLog(
            self.engine, interval_s=settings.prediction_log_interval_s
        )  # its drops are counted in /metrics by bento/prediction_log.py
        self.batcher = MicroBatcher(self._answer_predict, max_size=PREDICT_BATCH)
        # Everything loaded so far (Feast, BentoML, pandas, the model) lives as long as the
        # process. Frozen, the cyclic GC no longer walks it: a full collection of it is a pause
        # every request in flight would wait for (docs/benchmarks.md).
        gc.freeze()

    def __is_ready__(self) -> bool:
        """Ready when our database is at the newest migration (the prediction log writes
        there; asked on each probe until it is), the model is loaded and the online store
        answers a lookup."""
        self.schema_at_head = self.schema_at_head or schema_ready(self.engine)
        return self.schema_at_head and self.scorer.store_reachable()

    def _answer(self, applications: list[dict], endpoint: str) -> list[Prediction]:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        scores = self.scorer.score(applications, timings)
        LOOKUP_SECONDS.observe(timings["feature_lookup"])
        now = datetime.now(UTC)
        logged = []
        for application, score in zip(applications, scores, strict=True):
            SCORES.observe(score.default_probability)
            _decisions(score.decision, score.decided_by).inc()
            for feature in score.missing_features:
                MISSING.labels(feature=feature).inc()
            logged.append({
                "prediction_id": score.prediction_id, "at": now, "model_tag": score.model_tag,
                "entity_hash": self.entity_hash(*(application[k] for k in APPLICATIONS.key)),
                "features": score.features, "default_probability": score.default_probability,
                "decision": score.decision, "decided_by": score.decided_by,
                "rules_fired": score.rules_fired,
            })  # fmt: skip
        self.log.record(logged)
        _request_seconds(endpoint).observe(time.perf_counter() - started)
        return [_prediction(score) for score in scores]

    def _answer_predict(self, applications: list[dict]) -> list[Prediction]:
        BATCH_SIZE.observe(len(applications))
        return self._answer(applications, "predict")

    @bentoml.on_shutdown
    def _flush_log(self) -> None:
        self.log.close()

    # The endpoints are coroutines that score inline, on the event loop: the work is about a
    # millisecond of CPU, and a hand-off to a worker thread costs more than it saves.
    # Concurrent /predict requests are scored together (bento/microbatch.py).

    @bentoml.api(route="/predict", input_spec=LoanApplication)
    async def predict(self, **application: Any) -> Prediction:
        """Calibrated default probability, decision, the rule or band behind it, reasons."""
        return await self.batcher.submit(application)

    @bentoml.api(route="/noop", input_spec=LoanApplication)
    async def noop(self, **application: Any) -> dict:
        """Validates an application and answers without scoring: the framework's floor, which
        `make bench` measures /predict against."""
        return {"ok": True}

    @bentoml.api(route="/predict_batch", input_spec=ApplicationBatch)
    async def predict_batch(self, applications: list[Any]) -> list[Prediction]:
        """The same answer as /predict for each application, in one call."""
        if len(applications) > self.max_batch:
            raise BatchTooLarge(
                f"{len(applications)} applications: at most {self.max_batch} per call "
                "(CREDITFLOW_MAX_BATCH); split the batch"
            )
        rows = [a.model_dump() if hasattr(a, "model_dump") else dict(a) for a in applications]
        return self._answer(rows, "predict_batch")


# A client's mistake: a 4xx in one shape, one log line, no body read past the limit, counted in
# /metrics; and an accurate /docs.json (bento/middleware.py).
CreditScorer.add_asgi_middleware(
    ClientErrors,
    max_body_bytes=_settings.max_body_bytes,
    json_routes=[api.route for api in CreditScorer.apis.values()],
    title="creditflow scoring API",
    version=version("creditflow"),
    description="Credit-risk scoring: Feast online features, XGBoost, post-processing. Every "
    "4xx answer has one body: the `ClientError` schema.",
    rejected=lambda endpoint, field: _rejected(endpoint, field).inc(),
    fields=[*APPLICATIONS.names, "applications"],
    max_items={"/predict_batch": {"applications": _settings.max_batch}},
)
install_log_filter()
