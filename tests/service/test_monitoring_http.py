"""The service's side of monitoring and feedback, over HTTP against a real `bentoml serve`:
what each logged answer carries, POST /feedback (auth, every error, idempotence, a restart),
the per-window service statistics and the /metrics gauges of the latest monitoring run.

The server runs on a copy of the demo home's database, so that the rows it writes (and the
monitoring rows this module inserts) are this module's alone.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import psutil
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from creditflow.applicant_keys import home_entity_hasher, key_cipher
from creditflow.contract import APPLICATIONS
from creditflow.feedback.labels import label_history
from creditflow.ingestion.offline import newest_applications
from creditflow.postprocessing.rules import RULES_VERSION
from creditflow.tables import monitoring_results, monitoring_runs, predictions, service_stats
from creditflow.versions import code_version

TARGET = "creditflow.bento.service:CreditScorer"
TOKEN = f"token-{uuid.uuid4().hex}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCORING = ("predict", "predict_batch", "noop", "feedback")

# What this module sent to the first server, by endpoint: the statistics must add up to it.
SENT: Counter = Counter()


@pytest.fixture(scope="module")
def database(demo_database, tmp_path_factory) -> str:
    """A copy of the demo home's database: its champion; this module's rows alone."""
    return demo_database(tmp_path_factory.mktemp("database"))


@pytest.fixture(scope="module")
def engine(database):
    engine = sa.create_engine(database)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def env(served_env, database) -> dict[str, str]:
    return served_env(database, api_token=TOKEN, service_stats_interval_s=1,
                      monitoring_gauges_interval_s=0.5)  # fmt: skip


@pytest.fixture(scope="module")
def server(env, tmp_path_factory, serving):
    with serving(TARGET, env, tmp_path_factory.mktemp("served")) as (process, url):
        yield SimpleNamespace(process=process, url=url)


@pytest.fixture(scope="module")
def applications(demo_home) -> list[dict]:
    return newest_applications(demo_home.settings, 10)


def _post(server, route: str, **request) -> httpx.Response:
    """A POST to the first server, tallied by endpoint and outcome."""
    response = httpx.post(f"{server.url}{route}", timeout=30, **request)
    endpoint, status = route.strip("/"), response.status_code
    SENT[endpoint, "requests"] += 1
    kind = ("errors" if status >= 500 else "unauthorized" if status == 401
            else "rejected" if status >= 400 else None)  # fmt: skip
    if kind:
        SENT[endpoint, kind] += 1
    return response


def _eventually(check: Callable[[], object], what: str, timeout_s: float = 60):
    """``check()``'s first truthy answer, asked until ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while not (answer := check()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)
    return answer


def _logged(engine, ids: list[str]) -> list[sa.Row]:
    with engine.connect() as conn:
        query = sa.select(predictions).where(predictions.c.prediction_id.in_(ids))
        rows = conn.execute(query).all()
    return rows if len(rows) == len(ids) else []


def _samples(server, name: str) -> dict[tuple, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}  # fmt: skip


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    return body["error"]


def test_each_answer_is_logged_with_its_application_encrypted_keys_and_versions(
    server, engine, applications, demo_home
):
    before = datetime.now(UTC)
    singles = [_post(server, "/predict", json=a) for a in applications[:3]]
    batch = _post(server, "/predict_batch", json={"applications": applications[3:5]})
    answers = [r.json() for r in singles] + batch.json()
    ids = [a["prediction_id"] for a in answers]
    rows = _eventually(lambda: _logged(engine, ids), "the answers in the prediction log")
    by_id = {row.prediction_id: row for row in rows}
    cipher = key_cipher(demo_home.settings)
    entity_hash = home_entity_hasher(demo_home.settings)
    for application, answer, endpoint in zip(applications[:5], answers,
                                             ["predict"] * 3 + ["predict_batch"] * 2,
                                             strict=True):  # fmt: skip
        row = by_id[answer["prediction_id"]]
        keys = {k: application[k] for k in APPLICATIONS.key}
        assert cipher.decrypt(row.entity_keys) == keys
        assert row.entity_hash == entity_hash(*keys.values())
        assert row.application == {k: v for k, v in application.items() if k not in keys}
        assert (row.endpoint, row.rules_version, row.code_version) == (
            endpoint, RULES_VERSION, code_version(),
        )  # fmt: skip
        assert row.model_tag == answer["model_tag"] and row.decision == answer["decision"]
        assert before <= row.at.replace(tzinfo=UTC) <= datetime.now(UTC)
        stored = json.dumps([str(value) for value in row])
        assert application["dob_ssn"] not in stored
        assert application["dob_ssn"].replace("_", "") not in stored


def _predicted(server, engine, application: dict) -> dict:
    """A /predict answer, once it is in the prediction log (labels need it there)."""
    answer = _post(server, "/predict", json=application).json()
    _eventually(lambda: _logged(engine, [answer["prediction_id"]]), "the prediction logged")
    return answer


def test_feedback_needs_the_token_and_names_what_is_wrong(server, engine, applications):
    answer = _predicted(server, engine, applications[5])
    pid = answer["prediction_id"]
    label = {"prediction_id": pid, "outcome": 1,
             "outcome_at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()}  # fmt: skip
    unauthorized_before = _samples(server, "creditflow_unauthorized_requests_total")
    rejected_before = _samples(server, "creditflow_rejected_requests_total")

    # 401 without the token or with a wrong one: nothing stored, counted in /metrics.
    assert _error(_post(server, "/feedback", json=label), 401)["fields"] == []
    wrong = {"Authorization": f"Bearer {TOKEN}-not"}
    refused = _post(server, "/feedback", json=label, headers=wrong)
    assert _error(refused, 401)["message"] == "invalid bearer token"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert label_history(engine, pid) == []

    # 404 for a prediction the log does not have; 400 (contract) and 422 (at odds with the
    # prediction) naming the field.
    unknown = _post(server, "/feedback", json={**label, "prediction_id": "0" * 32}, headers=AUTH)
    assert _error(unknown, 404)["message"] == f"no prediction with prediction_id {'0' * 32!r}"
    cases = [
        ({"outcome": 2}, 400, "outcome"),
        ({"outcome": True}, 400, "outcome"),
        ({"outcome_at": 1767225600}, 400, "outcome_at"),  # not taken for epoch seconds
        ({"prediction_id": "not-an-id"}, 400, "prediction_id"),
        ({"source": ""}, 400, "source"),
        ({"outcome_at": "2000-01-01T00:00:00Z"}, 422, "outcome_at"),  # before the prediction
        ({"outcome_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, 422, "outcome_at"),
    ]
    for change, status, field in cases:
        error = _error(_post(server, "/feedback", json={**label, **change}, headers=AUTH), status)
        assert [f["field"] for f in error["fields"]] == [field], (change, error)
    assert label_history(engine, pid) == []

    # Stored, committed before the answer (read back at once), then idempotent, then corrected.
    stored = _post(server, "/feedback", json=label, headers=AUTH)
    assert stored.status_code == 201, stored.text
    receipt = stored.json()
    assert (receipt["status"], receipt["source"], receipt["corrects"]) == ("stored", "api", None)
    assert [row["id"] for row in label_history(engine, pid)] == [receipt["label_id"]]
    again = _post(server, "/feedback", json=label, headers=AUTH)
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["label_id"]) == ("duplicate", receipt["label_id"])
    changed = {**label, "outcome": 0, "source": "servicing"}
    correction = _post(server, "/feedback", json=changed, headers=AUTH)
    assert correction.status_code == 201
    assert correction.json()["status"] == "correction"
    assert correction.json()["corrects"] == receipt["label_id"]
    history = label_history(engine, pid)
    assert [(row["outcome"], row["source"]) for row in history] == [(1, "api"), (0, "servicing")]

    unauthorized = _samples(server, "creditflow_unauthorized_requests_total")
    key = (("endpoint", "feedback"),)
    assert unauthorized[key] - unauthorized_before.get(key, 0) == 2
    rejected = _samples(server, "creditflow_rejected_requests_total")
    grown = {dict(k)["field"]: v - rejected_before.get(k, 0) for k, v in rejected.items()
             if dict(k)["endpoint"] == "feedback" and v - rejected_before.get(k, 0)}  # fmt: skip
    assert grown == {"_body": 1, "outcome": 2, "outcome_at": 3, "prediction_id": 1, "source": 1}


def test_feedback_refuses_hostile_values_naming_the_field(server, engine, applications):
    answer = _predicted(server, engine, applications[9])
    pid = answer["prediction_id"]
    label = {"prediction_id": pid, "outcome": 1, "outcome_at": datetime.now(UTC).isoformat()}
    hostile = [
        ({"outcome": float("nan")}, "outcome"),  # NaN: not a JSON number at all
        ({"outcome": 2**64}, "outcome"),  # past every integer type
        ({"outcome": 1e308 * 10}, "outcome"),  # Infinity
        ({"outcome": "1"}, "outcome"),  # a string is not a number
        ({"outcome": 0.5}, "outcome"),
        ({"outcome_at": "not a time"}, "outcome_at"),
        ({"outcome_at": "9999-12-31T23:59:59Z"}, "outcome_at"),
        ({"prediction_id": ["a", "list"]}, "prediction_id"),
        ({"source": "x" * 100_000}, "source"),
    ]
    for change, field in hostile:
        body = json.dumps({**label, **change})  # NaN and Infinity written as Python writes them
        response = _post(server, "/feedback", content=body,
                         headers={**AUTH, "Content-Type": "application/json"})  # fmt: skip
        assert response.status_code in (400, 422), (change, response.text)
        error = _error(response, response.status_code)
        assert [f["field"] for f in error["fields"]] == [field], (change, error)
    huge = b'{"prediction_id": "' + b"0" * (2 * 1024 * 1024) + b'"}'
    too_big = _post(server, "/feedback", content=huge,
                    headers={**AUTH, "Content-Type": "application/json"})  # fmt: skip
    _error(too_big, 413)
    assert label_history(engine, pid) == []


def test_the_spec_documents_feedback(server):
    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    post = spec["paths"]["/feedback"]["post"]
    assert {"200", "201", "400", "401", "404", "413", "415", "422"} <= set(post["responses"])
    assert post["responses"]["201"]["content"] == post["responses"]["200"]["content"]
    scheme = next(iter(post["security"][0]))
    assert spec["components"]["securitySchemes"][scheme]["scheme"] == "bearer"
    assert "security" not in spec["paths"]["/predict"]["post"]  # scoring stays open
    body = post["requestBody"]["content"]["application/json"]["schema"]
    body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    assert set(body["required"]) == {"prediction_id", "outcome", "outcome_at"}


def _stats(engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(service_stats)).all()
    totals: Counter = Counter()
    for row in rows:
        assert sum(row.latency_histogram["counts"]) == row.requests
        for kind in ("requests", "errors", "rejected", "unauthorized"):
            totals[row.endpoint, kind] += getattr(row, kind)
        for field, n in row.rejections.items():
            totals[row.endpoint, f"field:{field}"] += n
    return totals


def test_service_statistics_count_every_request_rejections_included(server, engine, applications):
    """Rows per window, worker and endpoint, written off the request path: what this module
    sent, counted by endpoint (4xx answered before the app and 401s included)."""
    noop = applications[0]
    for request in (
        {"json": noop},
        {"json": noop},
        {"json": {**noop, "person_age": -1}},
        {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
    ):
        _post(server, "/noop", **request)
    expected = {key: n for key, n in SENT.items() if key[0] in SCORING}
    expected["noop", "field:person_age"] = expected["noop", "field:_body"] = 1

    def counted():
        totals = _stats(engine)
        return totals if all(totals[key] == n for key, n in expected.items()) else None

    totals = _eventually(counted, f"service_stats adding up to {expected}")
    for endpoint in SCORING:  # nothing counted that was not sent
        for kind in ("requests", "errors", "rejected", "unauthorized"):
            assert totals[endpoint, kind] == SENT[endpoint, kind], (endpoint, kind)
    with engine.connect() as conn:
        workers = conn.execute(sa.select(service_stats.c.worker).distinct()).scalars().all()
    assert len(workers) == 1  # one worker, one name


def _monitoring_run(engine, as_of: datetime, results: list[tuple], model_tag: str) -> None:
    with engine.begin() as conn:
        run_id = conn.execute(sa.insert(monitoring_runs).values(
            as_of=as_of, window_start=as_of - timedelta(days=7), window_end=as_of, status="alert",
            summary={}, started_at=as_of, finished_at=as_of,
        ).returning(monitoring_runs.c.id)).scalar_one()  # fmt: skip
        conn.execute(sa.insert(monitoring_results), [
            {"run_id": run_id, "model_tag": model_tag, "section": section, "metric": metric,
             "subject": subject, "value": value, "status": status, "details": {}}
            for section, metric, subject, value, status in results
        ])  # fmt: skip


def test_metrics_gauges_show_the_latest_monitoring_results(server, engine, demo_home):
    tag = demo_home.training["model_tag"]
    as_of = datetime.now(UTC).replace(microsecond=0)
    _monitoring_run(engine, as_of, [("drift", "psi", "person_income", 0.4, "alert"),
                                    ("drift", "psi", "loan_amnt", 0.12, "watch")], tag)  # fmt: skip
    income = (("metric", "psi"), ("section", "drift"), ("subject", "person_income"))
    amount = (("metric", "psi"), ("section", "drift"), ("subject", "loan_amnt"))

    def gauges(value: float):
        values = _samples(server, "creditflow_monitoring_value")
        return values if values.get(income) == value else None

    values = _eventually(lambda: gauges(0.4), "the gauges of the run")
    statuses = _samples(server, "creditflow_monitoring_status")
    assert (values[amount], statuses[income], statuses[amount]) == (0.12, 2, 1)
    run = _samples(server, "creditflow_monitoring_run_timestamp_seconds")
    assert run[()] == as_of.timestamp()

    # A newer run: new values; a series it lacks is no longer a number.
    _monitoring_run(engine, as_of + timedelta(hours=1),
                    [("drift", "psi", "person_income", 0.02, "ok")], tag)  # fmt: skip
    values = _eventually(lambda: gauges(0.02), "the gauges of the newer run")
    assert values[amount] != values[amount]  # NaN
    assert _samples(server, "creditflow_monitoring_status")[income] == 0


def _kill_tree(process) -> None:
    """SIGKILL to the server and every process it started: no shutdown hook runs."""
    tree = psutil.Process(process.pid).children(recursive=True)
    for each in [psutil.Process(process.pid), *tree]:
        each.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    psutil.wait_procs(tree, timeout=30)


def test_a_killed_server_loses_no_acknowledged_label(server, engine, applications, env,
                                                     serving, tmp_path):  # fmt: skip
    """Last: it kills the module's server. The label was committed before its 201."""
    answer = _predicted(server, engine, applications[6])
    label = {"prediction_id": answer["prediction_id"], "outcome": 0,
             "outcome_at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat()}  # fmt: skip
    stored = _post(server, "/feedback", json=label, headers=AUTH)
    assert stored.status_code == 201, stored.text
    _kill_tree(server.process)
    with serving(TARGET, env, tmp_path) as (_, url):
        again = httpx.post(f"{url}/feedback", json=label, headers=AUTH, timeout=30)
        assert again.status_code == 200, again.text
        assert (again.json()["status"], again.json()["label_id"]) == (
            "duplicate", stored.json()["label_id"],
        )  # fmt: skip
    assert len(label_history(engine, answer["prediction_id"])) == 1
