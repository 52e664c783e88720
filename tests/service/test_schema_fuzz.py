"""Schemathesis against the served service: requests drawn from the spec it publishes at
/docs.json, valid ones (positive mode) and ones that break it (negative mode), never answered
with a 5xx, and every answer as the spec says (a documented status, its content type, headers
and schema; an invalid request turned away with a 4xx, a valid one accepted).

Bounded: ``MAX_EXAMPLES`` drawn requests per operation and mode, in at most ``BUDGET_S`` seconds
per mode (the requests past it are not sent), always the same ones (derandomized).

Schemathesis' own pytest integration (``schemathesis.pytest.from_fixture``) does not run under
our pytest 9.2 (it sets ``Item._nodeid``, which pytest 9.2 no longer has), so each operation's
Hypothesis strategy is run here with Hypothesis itself; the checks are schemathesis'.
"""

from __future__ import annotations

import os
import time

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from schemathesis import GenerationMode

from creditflow.bento.middleware import corrected_spec
from creditflow.config import environment

MAX_EXAMPLES = 50
BUDGET_S = 150
TOKEN = "fuzz-token"
# As a schemathesis.toml would say it: every check of the answer to one request (none needs
# state). The bearer token of /feedback goes with every request: its drawn reports reach the
# label checks (a drawn prediction_id is unknown: 404, which a valid request may get).
CONFIG = {
    "request-timeout": 10,
    "headers": {"Authorization": f"Bearer {TOKEN}"},
    # A valid-looking outcome_at may still be in the future or before the prediction: a 422 the
    # schema cannot express (the time of the request, a row of the log).
    "operations": [
        {
            "include-path": "/feedback",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "422"]}},
        }
    ],
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "negative_data_rejection": {"enabled": True},  # what the spec calls invalid: a 4xx
        "positive_data_acceptance": {"enabled": True},  # what it calls valid: a 2xx
    },
}


@pytest.fixture(scope="module")
def api_schema(demo_home, tmp_path_factory, serving):
    """The spec a `bentoml serve` of the service publishes (its log checked after)."""
    folder = tmp_path_factory.mktemp("fuzz")
    # A small batch limit: drawn batches pass it (the spec's maxItems says it; a 413 after).
    env = {**os.environ, **environment(demo_home.settings), "CREDITFLOW_MAX_BATCH": "5",
           "CREDITFLOW_API_TOKEN": TOKEN}  # fmt: skip
    with serving("creditflow.bento.service:CreditScorer", env, folder) as (_, url):
        config = schemathesis.Config.from_dict(CONFIG)
        yield schemathesis.openapi.from_url(f"{url}/docs.json", config=config, timeout=10)
        log = (folder / "serve.log").read_text()
        assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]


def _inputs(operation) -> int:
    """How many things a request to ``operation`` can carry (body, parameters)."""
    return sum(len(list(part)) for part in (operation.body, operation.query,
               operation.path_parameters, operation.headers, operation.cookies))  # fmt: skip


def _fuzz(operation, mode: GenerationMode, session, deadline: float, sent: dict) -> None:
    """Up to ``MAX_EXAMPLES`` drawn requests to one operation, each answer checked."""
    sent[operation.label] = 0

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def answers_as_specified(case):
        if time.monotonic() > deadline:
            return
        sent[operation.label] += 1
        case.call_and_validate(session=session)

    answers_as_specified()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_the_service_answers_as_its_spec_says(api_schema, mode):
    deadline = time.monotonic() + BUDGET_S
    sent: dict[str, int] = {}
    failures = []
    with requests.Session() as session:
        for result in api_schema.get_all_operations():
            operation = result.ok()  # an operation the spec does not define well: raised here
            if mode is GenerationMode.NEGATIVE and not _inputs(operation):
                continue  # nothing to get wrong (/readyz, /metrics, ...)
            try:
                _fuzz(operation, mode, session, deadline, sent)
            except Exception as exc:  # every operation tried; all failures reported
                failures.append(f"{operation.label}:\n{exc}")
    assert not failures, "\n\n".join(failures)
    # Every operation reached (the 4 JSON endpoints; in positive mode BentoML's 4 probes too).
    assert len(sent) >= (8 if mode is GenerationMode.POSITIVE else 4), sent
    assert all(sent.values()), sent


def test_the_spec_carries_the_servers_batch_limit():
    """Set when the server starts (CREDITFLOW_MAX_BATCH), so not in the request model: without
    it a batch the spec calls valid is answered 413."""
    body = {"schema": {"properties": {"applications": {"type": "array", "minItems": 1}}}}
    spec = {"paths": {"/predict_batch": {"post": {
        "requestBody": {"content": {"application/json": body}}, "responses": {}}}}}  # fmt: skip
    fixed = corrected_spec(spec, {}, ["/predict_batch"], {"/predict_batch": {"applications": 5}})
    content = fixed["paths"]["/predict_batch"]["post"]["requestBody"]["content"]
    assert content["application/json"]["schema"]["properties"]["applications"] == {
        "type": "array", "minItems": 1, "maxItems": 5,
    }  # fmt: skip
