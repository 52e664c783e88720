"""Retraining never learns from data monitoring flagged as broken: it refuses, trains nothing,
and the run row says why. A drift alert not marked as data quality does not refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from creditflow.db import get_engine
from creditflow.retraining.job import history, retrain
from creditflow.tables import monitoring_results, monitoring_runs

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def _monitoring_run(engine, section: str, details: dict) -> None:
    with engine.begin() as conn:
        run_id = conn.execute(monitoring_runs.insert().returning(monitoring_runs.c.id), {
            "as_of": AS_OF - timedelta(hours=1), "window_start": AS_OF - timedelta(days=7),
            "window_end": AS_OF - timedelta(hours=1), "status": "alert", "summary": {},
            "started_at": AS_OF, "finished_at": AS_OF,
        }).scalar_one()  # fmt: skip
        conn.execute(monitoring_results.insert(), {
            "run_id": run_id, "section": section, "metric": "psi", "subject": "person_income",
            "value": 3.2, "threshold": 0.25, "status": "alert", "details": details,
        })  # fmt: skip


@pytest.mark.parametrize("section, details", [("quality", {}), ("drift", {"data_quality": True})])
def test_a_data_quality_alert_refuses_and_nothing_is_trained(home, section, details):
    engine = get_engine(home)
    _monitoring_run(engine, section, details)
    summary = retrain(home, as_of=AS_OF)
    assert summary["outcome"] == "refused" and summary["challenger"] is None
    assert "person_income" in summary["reasons"][0]
    (run,) = history(engine)
    assert run["outcome"] == "refused" and run["challenger_tag"] is None
    assert run["decision"]["quality"]["alerts"][0]["subject"] == "person_income"


def test_a_plain_drift_alert_does_not_refuse(home):
    engine = get_engine(home)
    _monitoring_run(engine, "drift", {})
    with pytest.raises(FileNotFoundError, match="no labeled loans"):  # it went on to train
        retrain(home, as_of=AS_OF)
    assert history(engine)[0]["outcome"] == "failed"
