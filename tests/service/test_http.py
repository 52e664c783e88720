"""The scoring service end to end over HTTP: the built bento, served by `bentoml serve <tag>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from creditflow.bento.scoring import Scorer
from creditflow.config import environment
from creditflow.ingestion.offline import newest_applications
from creditflow.model import registry
from creditflow.postprocessing.policy import decide

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "token-of-the-built-bento-test"


@pytest.fixture(scope="module")
def built_bento(demo_home) -> str:
    env = {**os.environ, **environment(demo_home.settings)}
    # As `make bento` does: the bento installs the package's wheel, built by `make wheel`.
    wheel = subprocess.run(["make", "-s", "wheel"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    result = subprocess.run(
        [str(BIN / "bentoml"), "build", "-f", "bento/bentofile.yaml", ".", "--output", "tag"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("creditflow:")
    return tag


@pytest.fixture(scope="module")
def server(demo_home, built_bento, tmp_path_factory, serving):
    """The served bento: its process and URL."""
    env = {
        **os.environ,
        **environment(demo_home.settings),
        "CREDITFLOW_MAX_BATCH": "5",
        # Slow log batches: only the shutdown hook can write the last ones in time.
        "CREDITFLOW_PREDICTION_LOG_INTERVAL_S": "5",
        # A service outside a bento would follow a promotion within this (test_the_built...).
        "CREDITFLOW_CHAMPION_CHECK_S": "0.5",
        "CREDITFLOW_API_TOKEN": TOKEN,
    }
    with serving(built_bento, env, tmp_path_factory.mktemp("elsewhere")) as served:
        yield served


@pytest.fixture(scope="module")
def service_url(server) -> str:
    return server[1]


@pytest.fixture(scope="module")
def applications(demo_home) -> list[dict]:
    return newest_applications(demo_home.settings, 20)


def test_predict_answers_like_the_in_process_scorer(service_url, applications, demo_home):
    scorer = Scorer(registry.load(demo_home.training["model_tag"]))
    for application in applications[:10]:
        response = httpx.post(f"{service_url}/predict", json=application, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        expected = scorer.score([application])[0]
        assert body["model_tag"] == demo_home.training["model_tag"]
        assert body["default_probability"] == pytest.approx(expected.default_probability, 1e-6)
        assert body["decision"] == expected.decision
        bands = {"approve_below": body["approve_below"], "decline_at": body["decline_at"]}
        band = decide(body["default_probability"], bands)
        assert body["decision"] == band or body["decided_by"] in body["rules_fired"]
        assert len(body["prediction_id"]) == 32


def test_unknown_applicant_is_scored_with_missing_features(service_url, applications):
    stranger = {**applications[0], "dob_ssn": "19000101_0000"}
    response = httpx.post(f"{service_url}/predict", json=stranger, timeout=10)
    assert response.status_code == 200, response.text
    assert "missed_payments_1y" in response.json()["missing_features"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"person_age": -5}, "person_age"),
        ({"person_income": 999_999_999}, "person_income"),
        ({"person_age": "old"}, "person_age"),
        ({"loan_intent": "CRYPTO"}, "loan_intent"),
    ],
)
def test_bad_requests_get_400_naming_the_field(service_url, applications, change, field):
    response = httpx.post(f"{service_url}/predict", json={**applications[0], **change}, timeout=10)
    assert response.status_code == 400
    assert field in response.text


def test_missing_field_gets_400(service_url, applications):
    body = {k: v for k, v in applications[0].items() if k != "loan_amnt"}
    response = httpx.post(f"{service_url}/predict", json=body, timeout=10)
    assert response.status_code == 400
    assert "loan_amnt" in response.text


def test_predict_batch_answers_like_predict_row_by_row(service_url, applications):
    batch = applications[:5]
    response = httpx.post(f"{service_url}/predict_batch", json={"applications": batch}, timeout=10)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert len(answers) == len(batch)
    for application, answer in zip(batch, answers, strict=True):
        single = httpx.post(f"{service_url}/predict", json=application, timeout=10).json()
        assert answer["default_probability"] == pytest.approx(single["default_probability"], 1e-9)
        assert (answer["decision"], answer["decided_by"]) == (single["decision"],
                                                              single["decided_by"])  # fmt: skip


def test_predict_batch_over_the_limit_is_413_with_the_limit(service_url, applications):
    response = httpx.post(f"{service_url}/predict_batch",
                          json={"applications": applications[:6]}, timeout=10)  # fmt: skip
    assert response.status_code == 413
    assert "at most 5" in response.text


def test_reason_codes_are_the_features_that_raised_the_score(service_url, applications):
    answers = [httpx.post(f"{service_url}/predict", json=a, timeout=10).json()
               for a in applications]  # fmt: skip
    high = max(answers, key=lambda a: a["default_probability"])
    reasons = high["reasons"]
    assert reasons, "a high score must have reasons"
    contributions = [r["contribution"] for r in reasons]
    assert contributions == sorted(contributions, reverse=True)
    assert all(c > 0 for c in contributions)
    low = min(answers, key=lambda a: a["default_probability"])
    assert sum(r["contribution"] for r in low["reasons"]) < sum(contributions)


def test_an_unknown_applicant_goes_to_review_by_rule(service_url, applications):
    stranger = {**applications[0], "dob_ssn": "19000101_0001"}
    body = httpx.post(f"{service_url}/predict", json=stranger, timeout=10).json()
    assert "REVIEW_MISSING_FEATURES" in body["rules_fired"]
    assert body["decision"] in ("review", "decline")


def _push_bureau_record(settings, dob_ssn: str, at: pd.Timestamp, bankruptcies: int) -> None:
    """A credit-history record through `creditflow push`'s path: contract, offline, online."""
    from creditflow.ingestion.ingest import ingest
    from creditflow.ingestion.readers import RawBatch, frame_fingerprint

    record = pd.DataFrame([{
        "dob_ssn": dob_ssn, "credit_card_due": 500, "mortgage_due": 0, "student_loan_due": 0,
        "vehicle_loan_due": 0, "hard_pulls": 1, "missed_payments_2y": 0,
        "missed_payments_1y": 0, "missed_payments_6m": 0, "bankruptcies": bankruptcies,
        "event_timestamp": at, "created_timestamp": at,
    }])  # fmt: skip
    summary = ingest("credit_history", RawBatch(record, "push", frame_fingerprint(record)),
                     settings, push_online=True)  # fmt: skip
    assert summary["accepted"] == 1


def test_a_pushed_credit_record_is_visible_to_the_next_predict(service_url, applications,
                                                               demo_home):  # fmt: skip
    newcomer = {**applications[1], "dob_ssn": "19000101_0002"}
    before = httpx.post(f"{service_url}/predict", json=newcomer, timeout=10).json()
    assert "bankruptcies" in before["missing_features"]
    now = pd.Timestamp.now(tz="UTC").floor("s")
    _push_bureau_record(demo_home.settings, newcomer["dob_ssn"], now, bankruptcies=3)
    after = httpx.post(f"{service_url}/predict", json=newcomer, timeout=10).json()
    assert "bankruptcies" not in after["missing_features"]
    assert after["decision"] == "decline"
    assert "HARD_DECLINE_BANKRUPTCIES" in after["rules_fired"]


def test_a_stale_credit_record_counts_as_missing(service_url, applications, demo_home):
    newcomer = {**applications[2], "dob_ssn": "19000101_0004"}
    old = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(days=400)  # TTL: 180 days
    _push_bureau_record(demo_home.settings, newcomer["dob_ssn"], old, bankruptcies=5)
    body = httpx.post(f"{service_url}/predict", json=newcomer, timeout=10).json()
    assert "bankruptcies" in body["missing_features"]
    assert "HARD_DECLINE_BANKRUPTCIES" not in body["rules_fired"]  # a stale fact decides nothing
    assert "REVIEW_MISSING_FEATURES" in body["rules_fired"]
    assert body["decision"] in ("review", "decline")


def test_predict_predict_batch_and_score_batch_agree(service_url, applications, tmp_path):
    """Path parity: the same applications, scored after the latest feature values, get the
    same probability, decision and rule from all three paths."""
    batch = applications[:5]
    singles = [httpx.post(f"{service_url}/predict", json=a, timeout=10).json() for a in batch]
    batched = httpx.post(f"{service_url}/predict_batch", json={"applications": batch},
                         timeout=10).json()  # fmt: skip
    source = tmp_path / "applications.csv"
    rows = [*batch, {**batch[0], "person_age": -5}]  # and one invalid row, kept with its error
    pd.DataFrame(rows).to_csv(source, index=False)
    output = tmp_path / "scored.parquet"
    result = subprocess.run(
        [str(BIN / "creditflow"), "score-batch", str(source), str(output), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr  # Feast's and ibis' chatter is not for users
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["rows_in"], summary["scored"], summary["invalid"]) == (6, 5, 1)
    scored = pd.read_parquet(output)
    assert len(scored) == 6
    assert scored["error"].iloc[5] == "person_age >= 18" and pd.isna(scored["decision"].iloc[5])
    for row, (single, in_batch) in enumerate(zip(singles, batched, strict=True)):
        offline = scored.iloc[row]
        assert offline["error"] is None
        for answer in (in_batch, offline):
            assert answer["default_probability"] == pytest.approx(
                single["default_probability"], rel=1e-9)  # fmt: skip
            assert answer["decision"] == single["decision"]
            assert answer["decided_by"] == single["decided_by"]
        assert list(offline["rules_fired"]) == single["rules_fired"]
        assert [r["feature"] for r in single["reasons"]] == [
            offline[f"reason_{k}"] for k in (1, 2, 3) if offline[f"reason_{k}"] is not None
        ]


def test_health_and_the_no_op_floor(service_url, applications):
    assert httpx.get(f"{service_url}/healthz", timeout=10).status_code == 200
    response = httpx.post(f"{service_url}/noop", json=applications[0], timeout=10)
    assert response.status_code == 200 and response.json() == {"ok": True}
    bad = httpx.post(f"{service_url}/noop", json={**applications[0], "person_age": -5}, timeout=10)
    assert bad.status_code == 400  # the floor validates like /predict


def test_openapi_docs(service_url):
    docs = httpx.get(f"{service_url}/docs", timeout=10, follow_redirects=True)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = httpx.get(f"{service_url}/docs.json", timeout=10).json()
    assert {"/predict", "/predict_batch", "/noop"} <= set(spec["paths"])


def _logged(settings, ids: list[str]) -> list[dict]:
    import sqlalchemy as sa

    from creditflow.db import get_engine
    from creditflow.tables import predictions

    query = sa.select(predictions).where(predictions.c.prediction_id.in_(ids))
    with get_engine(settings).connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def test_predictions_are_logged_with_a_keyed_hash_not_the_key(service_url, applications,
                                                              demo_home):  # fmt: skip
    answers = [httpx.post(f"{service_url}/predict", json=a, timeout=10).json()
               for a in applications[:5]]  # fmt: skip
    ids = [a["prediction_id"] for a in answers]
    deadline = time.monotonic() + 10
    while len(rows := _logged(demo_home.settings, ids)) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(r["prediction_id"] for r in rows) == sorted(ids)
    for row, application in zip(sorted(rows, key=lambda r: ids.index(r["prediction_id"])),
                                applications[:5], strict=True):  # fmt: skip
        assert application["dob_ssn"] not in str(row)
        assert len(row["entity_hash"]) == 64
        assert row["features"]["person_income"] == application["person_income"]
    metrics = httpx.get(f"{service_url}/metrics", timeout=10).text
    assert "creditflow_prediction_log_dropped" in metrics


def test_metrics_report_lookups_scores_decisions_and_missing_features(service_url,
                                                                     applications):  # fmt: skip
    stranger = {**applications[0], "dob_ssn": "19000101_0003"}
    for body in (applications[0], stranger):
        assert httpx.post(f"{service_url}/predict", json=body, timeout=10).status_code == 200
    assert httpx.get(f"{service_url}/readyz", timeout=10).status_code == 200
    text = httpx.get(f"{service_url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith("creditflow_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values["creditflow_feature_lookup_seconds_count"] >= 2
    assert values["creditflow_default_probability_count"] >= 2
    assert values['creditflow_request_seconds_count{endpoint="predict"}'] >= 2
    assert values['creditflow_missing_features_total{feature="bankruptcies"}'] >= 1
    decided = [v for k, v in values.items() if k.startswith("creditflow_decisions_total{")]
    assert sum(decided) >= 2


def test_the_built_bento_pins_its_model(service_url, applications, demo_home):
    """A promotion in the registry does not reach a built bento (it serves the model it was
    built with), and /admin/reload says why: 409."""
    from creditflow.model.stages import champion_tag, register_candidate
    from creditflow.training.promotion import promote

    settings = demo_home.settings
    built = demo_home.training["model_tag"]
    model = registry.load(built)
    other = registry.save(model.booster, {**model.metadata, "copy_of": built})
    register_candidate(other, settings)
    promote(other, force=True, settings=settings)
    try:
        assert champion_tag(settings) == other
        time.sleep(2)  # four registry checks of a service that follows the champion
        answer = httpx.post(f"{service_url}/predict", json=applications[0], timeout=10)
        assert answer.json()["model_tag"] == built
        reload = httpx.post(f"{service_url}/admin/reload", json={},
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)  # fmt: skip
        assert reload.status_code == 409, reload.text
        assert "pinned" in reload.text and built in reload.text
        answer = httpx.post(f"{service_url}/predict", json=applications[0], timeout=10)
        assert answer.json()["model_tag"] == built
    finally:
        from creditflow.model.stages import rollback

        rollback(settings)
    assert champion_tag(settings) == built


def test_a_graceful_shutdown_flushes_the_log(server, applications, demo_home):
    """Last in this module: it stops the server."""
    process, url = server
    batch = httpx.post(f"{url}/predict_batch", json={"applications": applications[:5]},
                       timeout=10).json()  # fmt: skip
    # Well within the 5 s log interval: without the shutdown hook these rows would be lost.
    process.terminate()  # SIGTERM: BentoML runs the shutdown hook, which drains the queue
    process.wait(timeout=60)
    ids = [a["prediction_id"] for a in batch]
    assert len(_logged(demo_home.settings, ids)) == len(ids)
