"""Every request the API turns away (a 4xx) is counted in /metrics,
``creditflow_rejected_requests_total{endpoint, field}``, once per field its answer names
(bento/middleware.py counts, bento/service.py keeps the counter)."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from creditflow.bento.middleware import ClientErrors, counted_field
from creditflow.config import environment
from creditflow.ingestion.offline import newest_applications

NAMES = frozenset({"applications", "person_age", "person_income"})


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("person_age", "person_age"),
        ("applications.3.person_age", "person_age"),
        ("person_income.float", "person_income"),  # a union's branch after the field
        ("applications", "applications"),
        ("applications.0.no_such_field", "applications"),  # an unknown key in an application
        ("no_such_field", "_other"),  # a client's own key: never a label of its own
        ("", "_body"),
    ],
)
def test_a_rejected_field_is_counted_under_its_contract_name(field, label):
    assert counted_field(field, NAMES) == label


def _rejections(app, path: str, headers: dict[str, str], body: bytes) -> list[tuple[str, str]]:
    counted: list[tuple[str, str]] = []
    middleware = ClientErrors(app, max_body_bytes=100, json_routes=["/predict_batch"], title="t",
                              version="1", rejected=lambda *labels: counted.append(labels),
                              fields=NAMES)  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": path,
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message):
        pass

    asyncio.run(middleware(scope, receive, send))
    return counted


def _answer(status: int, body: dict):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    return app


def test_the_middleware_counts_each_4xx_once_per_field():
    detail = [{"loc": ["applications", i, "person_age"], "msg": "bad"} for i in range(3)]
    detail.append({"loc": ["applications", 1, "person_income", "float"], "msg": "bad"})
    invalid = _answer(400, {"error": "invalid", "detail": detail})
    as_json = {"content-type": "application/json"}
    assert _rejections(invalid, "/predict_batch", as_json, b"{}") == [
        ("predict_batch", "person_age"), ("predict_batch", "person_income"),
    ]  # fmt: skip
    assert _rejections(invalid, "/predict_batch", {"content-type": "text/plain"}, b"{}") == [
        ("predict_batch", "_body")
    ]
    assert _rejections(invalid, "/predict_batch", {"content-length": "101"}, b"{}") == [
        ("predict_batch", "_body")
    ]
    assert _rejections(_answer(404, {}), "/anywhere/else", as_json, b"{}") == [("_other", "_body")]
    assert _rejections(_answer(200, {}), "/predict_batch", as_json, b"{}") == []


def _counts(url: str) -> dict[tuple[str, str], float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return {(s.labels["endpoint"], s.labels["field"]): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
            if s.name == "creditflow_rejected_requests_total"}  # fmt: skip


@pytest.fixture(scope="module")
def url(demo_home, tmp_path_factory, serving):
    folder = tmp_path_factory.mktemp("rejections")
    env = {**os.environ, **environment(demo_home.settings), "CREDITFLOW_MAX_BATCH": "5"}
    with serving("creditflow.bento.service:CreditScorer", env, folder) as (_, url):
        yield url


def test_metrics_count_the_rejections_per_endpoint_and_field(url, demo_home):
    application = newest_applications(demo_home.settings, 1)[0]
    before = _counts(url)
    bad = [
        ("/predict", {"json": {**application, "person_age": "thirty"}}),
        ("/predict", {"json": {**application, "person_age": True, "person_income": -1}}),
        ("/predict", {"json": {**application, "favourite_colour": "blue"}}),
        ("/predict", {"content": b"{nope", "headers": {"Content-Type": "application/json"}}),
        ("/noop", {"content": b"{}", "headers": {"Content-Type": "text/plain"}}),
        ("/predict_batch", {"json": {"applications": [
            {**application, "person_age": "x"}, {**application, "person_age": -3},
        ]}}),
        ("/predict_batch", {"json": {"applications": [application] * 6}}),  # over the limit
        ("/nope", {"json": application}),
    ]  # fmt: skip
    for route, request in bad:
        assert httpx.post(f"{url}{route}", timeout=10, **request).status_code // 100 == 4, route
    assert httpx.post(f"{url}/predict", json=application, timeout=10).status_code == 200
    after = _counts(url)
    grown = {labels: after[labels] - before.get(labels, 0) for labels in after}
    assert {labels: n for labels, n in grown.items() if n} == {
        ("predict", "person_age"): 2,
        ("predict", "person_income"): 1,
        ("predict", "_other"): 1,
        ("predict", "_body"): 1,
        ("noop", "_body"): 1,
        ("predict_batch", "person_age"): 1,  # two applications, one request
        ("predict_batch", "_body"): 1,
        ("_other", "_body"): 1,
    }
