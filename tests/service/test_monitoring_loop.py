"""Monitoring and feedback end to end, as a user meets them: a served champion answers
ordinary traffic, then traffic whose incomes arrive in thousands; outcomes are posted and
imported; `creditflow monitor` is healthy on the first window and exits with its alert code
naming person_income on the second; the accuracy section counts the labels; and the next
training set holds them, at the time of the application they answer.

The server and the CLI share a copy of the demo home's database, so every row is this module's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from creditflow.cli import ExitCode
from creditflow.contract import LOANS
from creditflow.ingestion.offline import newest_applications
from creditflow.tables import monitoring_results, predictions

TARGET = "creditflow.bento.service:CreditScorer"
TOKEN = f"token-{uuid.uuid4().hex}"
PER_WINDOW = 250  # above monitoring's MIN_ROWS_FOR_DRIFT: drift is judged, not only shown


@pytest.fixture(scope="module")
def database(demo_database, tmp_path_factory) -> str:
    return demo_database(tmp_path_factory.mktemp("loop"))


@pytest.fixture(scope="module")
def env(served_env, database) -> dict[str, str]:
    return served_env(database, api_token=TOKEN, service_stats_interval_s=1)


@pytest.fixture(scope="module")
def server(env, tmp_path_factory, serving):
    with serving(TARGET, env, tmp_path_factory.mktemp("served")) as (_, url):
        yield url


def _cli(env: dict, *args: str) -> tuple[int, dict]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "creditflow"), *args, "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def _score(url: str, engine: sa.Engine, applications: list[dict]) -> list[dict]:
    """One /predict each; returns the answers once all of them are in the prediction log."""
    answers = []
    for application in applications:
        response = httpx.post(f"{url}/predict", json=application, timeout=30)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    ids = [a["prediction_id"] for a in answers]
    deadline = time.monotonic() + 60
    while True:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(predictions.c.prediction_id.in_(ids))
            if conn.scalar(query) == len(ids):
                return answers
        assert time.monotonic() < deadline, "the answers never reached the prediction log"
        time.sleep(0.2)


def _minutes(since: datetime, until: datetime) -> str:
    """A --window reaching back from ``until`` to just after ``since``."""
    return f"{(until - since).total_seconds() / 60:.4f}m"


def test_traffic_outcomes_monitor_and_training(server, env, database, demo_home, tmp_path):
    engine = sa.create_engine(database)
    applications = newest_applications(demo_home.settings, 2 * PER_WINDOW)
    time.sleep(0.01)
    start = datetime.now(UTC)
    ordinary = _score(server, engine, applications[:PER_WINDOW])
    middle = datetime.now(UTC)
    in_thousands = [{**a, "person_income": a["person_income"] // 1000}
                    for a in applications[PER_WINDOW:]]  # fmt: skip
    _score(server, engine, in_thousands)
    time.sleep(1.5)  # the service statistics of the last window are written every second
    end = datetime.now(UTC)

    # Ordinary traffic: no alert (values to watch may show: exit 0 all the same).
    code, healthy = _cli(env, "monitor", "--as-of", middle.isoformat(),
                         "--window", _minutes(start, middle))  # fmt: skip
    assert code == ExitCode.OK, healthy["alerts"]
    assert healthy["status"] in ("ok", "watch") and Path(healthy["report"]).exists()

    # Incomes in thousands: the alert code, and person_income named first among the drifts.
    code, drifted = _cli(env, "monitor", "--as-of", end.isoformat(),
                         "--window", _minutes(middle, end))  # fmt: skip
    assert code == ExitCode.ALERT and drifted["status"] == "alert"
    drifting = [a["subject"] for a in drifted["alerts"] if a["section"] == "drift"]
    assert drifting and drifting[0] == "person_income", drifted["alerts"]

    # Outcomes: a few posted, more imported from a file; all of them for ordinary answers.
    posted, imported = ordinary[:5], ordinary[5:25]
    for answer in posted:
        response = httpx.post(
            f"{server}/feedback", headers={"Authorization": f"Bearer {TOKEN}"},
            json={"prediction_id": answer["prediction_id"], "outcome": 1,
                  "outcome_at": datetime.now(UTC).isoformat()},
            timeout=30,
        )  # fmt: skip
        assert response.status_code == 201, response.text
    labels = tmp_path / "labels.csv"
    pd.DataFrame({
        "prediction_id": [a["prediction_id"] for a in imported],
        "outcome": [i % 2 for i in range(len(imported))],
        "outcome_at": datetime.now(UTC).isoformat(),
    }).to_csv(labels, index=False)  # fmt: skip
    code, summary = _cli(env, "feedback", "import", str(labels))
    assert code == 0 and (summary["rows_in"], summary["stored"]) == (len(imported), len(imported))

    # The accuracy section counts them (too few to judge, so reported, not alerted).
    code, later = _cli(env, "monitor", "--window", _minutes(start, datetime.now(UTC)))
    assert code in (ExitCode.OK, ExitCode.ALERT)
    with engine.connect() as conn:
        labeled = conn.scalar(
            sa.select(monitoring_results.c.value).where(
                monitoring_results.c.run_id == later["run_id"],
                monitoring_results.c.section == "accuracy",
                monitoring_results.c.metric == "labeled_rows",
                monitoring_results.c.subject == "all",
                monitoring_results.c.model_tag == ordinary[0]["model_tag"],
            )
        )  # fmt: skip
    assert labeled == len(posted) + len(imported)

    # The next training set holds the labels, each at its application's time.
    from creditflow.training.dataset import build_training_set

    settings = demo_home.settings.model_copy(update={"database_url": database})
    data = build_training_set("credit_model_v1", settings)
    assert data.feedback["rows"] == len(posted) + len(imported)
    assert sum(data.feedback["by_decision"].values()) == len(posted) + len(imported)
    with engine.connect() as conn:
        logged_at = dict(conn.execute(
            sa.select(predictions.c.prediction_id, predictions.c.at).where(
                predictions.c.prediction_id.in_([a["prediction_id"] for a in ordinary[:25]])
            )
        ).all())  # fmt: skip
    feedback_rows = data.frame[data.frame[LOANS.key[0]] < 0]  # feedback rows: negative ids
    assert len(feedback_rows) == len(logged_at)
    times = sorted(pd.to_datetime(feedback_rows[LOANS.timestamp], utc=True))
    assert times == sorted(pd.Timestamp(t, tz="UTC") if t.tzinfo is None else pd.Timestamp(t)
                           for t in logged_at.values())  # fmt: skip
    engine.dispose()
