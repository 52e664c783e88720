"""The scoring service: one BentoML class, the request model comes from the data contract."""

from __future__ import annotations

import functools
import gc
import time
from datetime import timedelta
from http import HTTPStatus
from importlib.metadata import version
from typing import Any, ClassVar

import bentoml
from bentoml.exceptions import BentoMLException
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from creditflow import clock
from creditflow.applicant_keys import home_entity_hasher
from creditflow.bento import feedback_endpoint
from creditflow.bento.auth import BearerAuth
from creditflow.bento.metrics_dir import own_metrics_dir
from creditflow.bento.microbatch import MicroBatcher
from creditflow.bento.middleware import ClientErrors, install_log_filter
from creditflow.bento.model_watch import ModelWatch, Serving, champion_check_s
from creditflow.bento.monitoring_gauges import MonitoringGauges
from creditflow.bento.prediction_log import ENTITY_KEY_VALUES, KeySealer, PredictionLog
from creditflow.bento.scoring import Score, Scorer
from creditflow.bento.service_stats import RequestStats, ServiceStats
from creditflow.bento.shadow import ShadowLane
from creditflow.config import export_environment, get_settings
from creditflow.contract import APPLICATIONS, LABELS, request_model
from creditflow.db import get_engine, serve_without_migrating
from creditflow.migrate import schema_ready
from creditflow.model import registry
from creditflow.model.stages import CHAMPION, SHADOW, require_champion, serving_tags
from creditflow.postprocessing.rules import RULES_VERSION
from creditflow.store.features import get_store
from creditflow.versions import code_version

export_environment()
_settings = get_settings()
# Read once, here (creditflow/config.py: CREDITFLOW_SERVICE_STATS, CREDITFLOW_LOG_APPLICATIONS).
SERVICE_STATS = _settings.service_stats
CHAMPION_CHECK_S = champion_check_s(_settings)  # bento/model_watch.py
LOG_APPLICATIONS = _settings.log_applications
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


class PinnedModel(BentoMLException):
    error_code = HTTPStatus.CONFLICT


class ModelsServed(BaseModel):
    champion: str = Field(description="the tag answering /predict after the reload")
    # A string, empty for none: BentoML's spec drops the null of an optional field.
    shadow: str = Field(description="the tag scoring beside it, unseen (empty: none)")
    swapped: list[str] = Field(description="roles that switched to another model")
    refused: dict[str, str] = Field(
        description="tags the registry named that failed to load or their self-check: why"
    )


class ApplicationBatch(BaseModel):
    applications: list[LoanApplication] = Field(  # type: ignore[valid-type]
        min_length=1, description="at most CREDITFLOW_MAX_BATCH items (this server's: maxItems)"
    )


_ANSWERED = tuple(name for name in Prediction.model_fields if name != "reasons")
_KEYS = APPLICATIONS.key


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
UNAUTHORIZED = Counter(
    name="creditflow_unauthorized_requests",
    documentation="401 answers (missing or wrong bearer token), by endpoint (bento/auth.py)",
    labelnames=["endpoint"],
)
# Each labelled child looked up once: ``labels()`` takes a lock and builds a key every call.
_decisions = functools.cache(
    lambda decision, by: DECISIONS.labels(decision=decision, decided_by=by)
)
_request_seconds = functools.cache(lambda endpoint: REQUEST_SECONDS.labels(endpoint=endpoint))
# Bounded: the middleware names only our endpoints and the contract's fields (else _other).
_rejected = functools.cache(lambda endpoint, field: REJECTED.labels(endpoint=endpoint, field=field))
_unauthorized = functools.cache(lambda endpoint: UNAUTHORIZED.labels(endpoint=endpoint))

# This worker's request statistics, written by a thread the service starts (off if
# CREDITFLOW_SERVICE_STATS=0). Built here: the middleware below counts into it.
_stats = ServiceStats(get_engine(_settings), _settings.service_stats_interval_s)


def _count_rejection(endpoint: str, field: str) -> None:
    _rejected(endpoint, field).inc()
    if SERVICE_STATS:
        _stats.rejection(endpoint, field)


# BentoML serves the Swagger UI at / and the spec at /docs.json; /docs leads to the UI.
_docs = Starlette(routes=[Route("/", lambda _: RedirectResponse("/", status_code=307))])


@bentoml.asgi_app(_docs, path="/docs")
@bentoml.service(name="creditflow", workers=1, traffic={"timeout": 10})
class CreditScorer:
    # The champion at import time; a built bento pins the champion it was built with, and only a
    # service not served from a bento follows the registry (bento/model_watch.py).
    model_ref = bentoml.models.BentoModel(require_champion())

    def __init__(self) -> None:
        settings = get_settings()
        self.settings = settings
        champion = Scorer(registry.from_stored(self.model_ref))
        # Served from a built bento: its model is pinned, the registry is not followed.
        self.pinned = CreditScorer.bento is not None
        self.watch = ModelWatch(
            Serving(champion), tags=lambda: serving_tags(settings, self.engine),
            load=self._load_scorer, interval_s=CHAMPION_CHECK_S, on_swap=self._swapped,
        )  # fmt: skip
        self.max_batch = settings.max_batch
        self.entity_hash = home_entity_hasher(settings)
        self.engine = get_engine(settings)  # not migrated here: see __is_ready__
        self.schema_at_head = False
        # What produced each answer, logged with it.
        self.code_version = code_version()
        self.log = PredictionLog(
            self.engine, interval_s=settings.prediction_log_interval_s,
            sealer=KeySealer.of_home(settings),  # the writer hashes and encrypts the keys
        )  # fmt: skip  # its drops are counted in /metrics by bento/prediction_log.py
        self.future_tolerance = timedelta(minutes=settings.future_tolerance_minutes)
        if SERVICE_STATS:
            _stats.start()
        self.gauges = MonitoringGauges(
            self.engine, champion.model.tag, settings.monitoring_gauges_interval_s
        )
        self.gauges.start()
        self.batcher = MicroBatcher(self._answer_predict, max_size=PREDICT_BATCH)
        self.shadow = ShadowLane(self._score_shadow)
        if not self.pinned:
            self.watch.check()  # a shadow named in the registry, or a champion promoted since
            self.watch.start()
        # Everything loaded so far (Feast, BentoML, pandas, the model) lives as long as the
        # process. Frozen, the cyclic GC no longer walks it: a full collection of it is a pause
        # every request in flight would wait for (docs/benchmarks.md).
        gc.freeze()

    def __is_ready__(self) -> bool:
        """Ready when our database is at the newest migration (the prediction log writes
        there; asked on each probe until it is), the model is loaded and the online store
        answers a lookup."""
        self.schema_at_head = self.schema_at_head or schema_ready(self.engine)
        return self.schema_at_head and self.watch.serving.champion.store_reachable()

    @property
    def scorer(self) -> Scorer:
        """The champion's scorer now (it may be swapped at any moment: read it once)."""
        return self.watch.serving.champion

    def _load_scorer(self, tag: str) -> Scorer:
        """A model from the home's store with a Feast store of its own: the registry as it is
        now (a FeatureService applied since the start included)."""
        return Scorer(registry.load(tag), get_store(self.settings))

    def _swapped(self, serving: Serving) -> None:
        self.gauges.model_tag = serving.champion.model.tag

    def _answer(self, applications: list[dict], endpoint: str) -> list[Prediction]:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        serving = self.watch.serving  # once: this batch is answered by one model
        scores = serving.champion.score(applications, timings)
        LOOKUP_SECONDS.observe(timings["feature_lookup"])
        for score in scores:
            SCORES.observe(score.default_probability)
            _decisions(score.decision, score.decided_by).inc()
            for feature in score.missing_features:
                MISSING.labels(feature=feature).inc()
        request_ids = [score.prediction_id for score in scores]
        self.log.record(self._rows(applications, scores, request_ids, endpoint, CHAMPION))
        if serving.shadow is not None:  # scored and logged by a thread, after the answer
            self.shadow.submit(serving.shadow, applications, request_ids, endpoint)
        _request_seconds(endpoint).observe(time.perf_counter() - started)
        return [_prediction(score) for score in scores]

    def _score_shadow(
        self, scorer: Scorer, applications: list[dict], request_ids: list[str], endpoint: str
    ) -> None:
        scores = scorer.score(applications)
        self.log.record(self._rows(applications, scores, request_ids, endpoint, SHADOW))

    def _rows(
        self,
        applications: list[dict],
        scores: list[Score],
        request_ids: list[str],
        endpoint: str,
        role: str,
    ) -> list[dict]:
        """The prediction log's rows: the champion's answer and a shadow's share a request id
        (the champion answer's prediction id)."""
        now = clock.now()
        logged = []
        for application, score, request_id in zip(applications, scores, request_ids, strict=True):
            row = {
                "prediction_id": score.prediction_id, "at": now, "model_tag": score.model_tag,
                "features": score.features, "default_probability": score.default_probability,
                "decision": score.decision, "decided_by": score.decided_by,
                "rules_fired": score.rules_fired, "request_id": request_id, "role": role,
                "explored": score.explored,
            }  # fmt: skip
            keys = tuple(application[k] for k in _KEYS)
            if LOG_APPLICATIONS:  # the writer turns the keys into hash and ciphertext
                row[ENTITY_KEY_VALUES] = keys
                row["application"] = {k: v for k, v in application.items() if k not in _KEYS}
                row["endpoint"] = endpoint
                row["rules_version"] = RULES_VERSION
                row["code_version"] = self.code_version
            else:
                row["entity_hash"] = self.entity_hash(*keys)
            logged.append(row)
        return logged

    def _answer_predict(self, applications: list[dict]) -> list[Prediction]:
        BATCH_SIZE.observe(len(applications))
        return self._answer(applications, "predict")

    @bentoml.on_shutdown
    def _stop_background_work(self) -> None:
        """The rest of the prediction log and of the statistics written (graceful shutdown)."""
        self.watch.close()
        self.gauges.close()
        self.shadow.close()  # its last rows into the log, before the log closes
        self.log.close()
        if SERVICE_STATS:
            _stats.close()

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

    # A plain function, in a thread: loading a model never holds up the event loop.
    @bentoml.api(route="/admin/reload", output_spec=ModelsServed)
    def reload(self) -> ModelsServed:
        """Asks the model registry now and switches to the champion (and shadow) it names, if
        they load and pass their self-check; retries models refused before. Needs
        `Authorization: Bearer <CREDITFLOW_API_TOKEN>`. 409: served from a built bento, whose
        model is pinned."""
        if self.pinned:
            raise PinnedModel(
                f"served from a built bento: its model {self.scorer.model.tag} is pinned; "
                "serve the new champion's bento (creditflow retrain --build) instead"
            )
        served = self.watch.check(retry_refused=True)
        return ModelsServed(**{**served, "shadow": served["shadow"] or ""})

    # A plain function: BentoML runs it in a thread, and the label's transaction (committed
    # before the answer) never holds up the event loop.
    @bentoml.api(
        route="/feedback",
        input_spec=feedback_endpoint.LabelReport,
        output_spec=feedback_endpoint.LabelReceipt,
    )
    def feedback(self, **report: Any) -> Response:
        """Records the observed outcome of a logged prediction (1: defaulted within the
        performance window). Needs `Authorization: Bearer <CREDITFLOW_API_TOKEN>`. 201: stored
        (or a correction of its label, kept with its history); 200: a duplicate, nothing
        stored. A prediction is in the log within about a second of its answer."""
        return feedback_endpoint.record(self.engine, report, self.future_tolerance)


# Routes that write or administer: a bearer token (bento/auth.py). Scoring stays open.
PROTECTED_ROUTES = ("/feedback", "/admin/reload")
# BentoML's own routes, counted under their names (others: _other).
PROBE_ROUTES = ("/healthz", "/livez", "/readyz", "/metrics", "/docs.json")
_ROUTES = (*(api.route for api in CreditScorer.apis.values()), *PROBE_ROUTES)

# Our middleware, outermost first. Every request's status and latency into the service
# statistics (bento/service_stats.py), 401s included.
if SERVICE_STATS:
    CreditScorer.add_asgi_middleware(RequestStats, stats=_stats, routes=_ROUTES)
CreditScorer.add_asgi_middleware(
    BearerAuth,
    protected=PROTECTED_ROUTES,
    token=_settings.api_token.get_secret_value() if _settings.api_token else None,
    unauthorized=lambda endpoint: _unauthorized(endpoint).inc(),
)
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
    rejected=_count_rejection,
    fields=[*APPLICATIONS.names, "applications", *LABELS.names],
    max_items={"/predict_batch": {"applications": _settings.max_batch}},
    named_routes=PROBE_ROUTES,
    route_errors={"/feedback": feedback_endpoint.ERRORS},
    route_answers={"/feedback": feedback_endpoint.ANSWERS},
    bearer_routes=PROTECTED_ROUTES,
)
install_log_filter()
