"""`creditflow monitor` on the demo world's model: quiet on a window of the same population,
an alert naming person_income when incomes arrive in thousands, nothing read after as_of, and
a run whose report and summary are its stored rows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from creditflow.clock import parse_duration as parse_window
from creditflow.contract import APPLICATION_COLUMNS
from creditflow.db import get_engine
from creditflow.model import registry
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.run import alerts_of, monitor, overall, stored_run
from creditflow.postprocessing.predict import Predictor
from creditflow.tables import monitoring_runs, predictions, service_stats

# Two back-to-back windows far from any other test's rows: the first as the demo world's recent
# loans are, the second the same loans with incomes reported in thousands.
CLEAN_AS_OF = datetime(2031, 3, 8, tzinfo=UTC)
DRIFTED_AS_OF = CLEAN_AS_OF + timedelta(days=7)
DRIFT_SECTIONS = ("drift", "score_drift", "decision_drift")


def _recent_loans(settings, model) -> pd.DataFrame:
    """The demo world's most recent labelled loans (the training's test window: after every row
    the model learned from) with their point-in-time features."""
    from creditflow.training.dataset import TEST_SHARE, VALID_SHARE, build_training_set, time_split

    data = build_training_set(model.contract.service, settings, feedback=False)
    return time_split(data.frame, TEST_SHARE, VALID_SHARE)[2].reset_index(drop=True)


def _in_thousands(loans: pd.DataFrame) -> pd.DataFrame:
    """Incomes reported in thousands upstream, and the ratios the store derives from them; and,
    broken elsewhere upstream, a state code the model never saw on every 20th loan and no
    hard_pulls on every third."""
    out = loans.copy()
    out.loc[out.index % 20 == 0, "state"] = "ZZ"
    out["hard_pulls"] = out["hard_pulls"].where(out.index % 3 != 0)
    income = (out["person_income"] // 1000).astype(float)
    out["person_income"] = income
    per_income = income.where(income != 0)
    out["loan_to_income"] = out["loan_amnt"] / per_income
    out["interest_to_income"] = out["loan_amnt"] * out["loan_int_rate"] / 100.0 / per_income
    out["debt_to_income"] = out["total_debt"] / per_income
    return out


def _plain(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _log(engine, model, loans: pd.DataFrame, as_of: datetime, prefix: str) -> int:
    """Log ``loans`` as the model's answers to them, spread over the 7 days before ``as_of``."""
    names = list(model.contract.names)
    answers = Predictor(model).predict({n: loans[n].to_numpy(dtype=object) for n in names})
    fields = [c.name for c in APPLICATION_COLUMNS]
    step = timedelta(days=7) / (len(loans) + 1)
    rows = []
    for i, record in enumerate(loans[names + [f for f in fields if f not in names]].to_dict(
            "records")):  # fmt: skip
        rows.append({
            "prediction_id": f"{prefix}{i:08d}", "at": as_of - step * (len(loans) - i),
            "model_tag": model.tag, "entity_hash": "0" * 64,
            "features": {n: _plain(record[n]) for n in names},
            "default_probability": float(answers.probability[i]),
            "decision": str(answers.decision[i]), "decided_by": str(answers.decided_by[i]),
            "rules_fired": answers.rules_fired(i), "endpoint": "predict",
            "application": {f: _plain(record[f]) for f in fields},
        })  # fmt: skip
    with engine.begin() as conn:
        conn.execute(predictions.insert(), rows)
    return len(rows)


def _rejections(engine, at: datetime, requests: int, by_field: dict[str, int]) -> None:
    with engine.begin() as conn:
        conn.execute(service_stats.insert(), {
            "window_start": at, "window_s": 10.0, "worker": "test", "endpoint": "predict",
            "requests": requests, "errors": 0, "rejected": sum(by_field.values()),
            "unauthorized": 0, "latency_sum_s": 0.002 * requests,
            "latency_histogram": {"le": [0.005, None], "counts": [requests, 0]},
            "rejections": by_field,
        })  # fmt: skip


@pytest.fixture(scope="module")
def logged(demo_home):
    """The champion's log: clean traffic in the first window, incomes in thousands (and a new
    loan_intent refused by the API) in the second."""
    settings = demo_home.settings
    model = registry.load(demo_home.training["model_tag"], nthread=None)
    engine = get_engine(settings)
    loans = _recent_loans(settings, model)
    clean = _log(engine, model, loans, CLEAN_AS_OF, "clean")
    drifted = _log(engine, model, _in_thousands(loans), DRIFTED_AS_OF, "thousands")
    _rejections(engine, DRIFTED_AS_OF - timedelta(hours=3), 1000, {"loan_intent": 120})
    return settings, model, {"clean": clean, "drifted": drifted, "loans": loans}


def _rows_of(summary: dict, settings) -> list[dict]:
    return stored_run(get_engine(settings), summary["run_id"])[1]


def test_no_drift_alert_on_a_window_of_the_same_population(logged):
    settings, model, counts = logged
    # As of the end of the clean window: the drifted rows logged later are not read.
    summary = monitor(settings, as_of=CLEAN_AS_OF, model_tag=model.tag)
    rows = _rows_of(summary, settings)
    alerting = [r for r in rows if r["section"] in DRIFT_SECTIONS and r["status"] == th.ALERT]
    assert alerting == []
    assert not [a for a in summary["alerts"] if a["section"] in DRIFT_SECTIONS + ("quality",)]
    volume = next(r for r in rows if r["section"] == "quality" and r["metric"] == "rows")
    assert volume["value"] == counts["clean"]
    income = next(r for r in rows if r["section"] == "drift" and r["subject"] == "person_income"
                  and r["metric"] == "psi")  # fmt: skip
    assert income["value"] < th.PSI_WATCH
    assert income["status"] == th.OK


def test_incomes_in_thousands_alert_naming_person_income_first(logged):
    settings, model, counts = logged
    summary = monitor(settings, as_of=DRIFTED_AS_OF, model_tag=model.tag)
    assert summary["status"] == th.ALERT
    drift = [a for a in summary["alerts"] if a["section"] == "drift"]
    # Ranked by impact (PSI x importance share): the feature that moved the score comes first.
    assert drift[0]["subject"] == "person_income"
    assert drift[0]["model"] == model.tag
    assert drift[0]["value"] > th.PSI_ALERT and drift[0]["threshold"] == th.PSI_ALERT
    score = [a for a in summary["alerts"] if a["section"] == "score_drift"]
    if score:  # the score moved too: its alert names the features that moved it
        assert score[0]["features"][0] == "person_income"
    # Data quality, each named: the API refused a new loan_intent (its share of requests, by
    # field), a state the model never saw, hard_pulls missing far more than in training.
    quality = {
        (a["metric"], a["subject"]): a for a in summary["alerts"] if a["section"] == "quality"
    }
    assert set(quality) == {
        ("rejected_share", "predict:loan_intent"),
        ("unknown_category_share", "state"),
        ("missing_share", "hard_pulls"),
    }
    assert quality["rejected_share", "predict:loan_intent"]["value"] == pytest.approx(0.12)
    assert quality["unknown_category_share", "state"]["value"] == pytest.approx(0.05, abs=0.002)
    rows = _rows_of(summary, settings)
    state = next(
        r for r in rows if r["metric"] == "unknown_category_share" and r["subject"] == "state"
    )
    assert list(state["details"]["values"]) == ["ZZ"]
    # The complete days of the window were profiled and kept for the next run.
    kept = sorted((settings.profiles_dir / model.tag.replace(":", "_")).glob("2031*_1d.bin"))
    assert len(kept) >= 7


def test_the_run_its_report_and_its_summary_are_the_stored_rows(logged):
    settings, model, _ = logged
    summary = monitor(settings, as_of=DRIFTED_AS_OF, model_tag=model.tag)
    engine = get_engine(settings)
    run, rows = stored_run(engine, summary["run_id"])
    assert run["status"] == summary["status"] == th.ALERT
    assert run["report"] == summary["report"]
    assert run["summary"] == json.loads(json.dumps(summary))
    assert summary["counts"]["results"] == len(rows)
    assert summary["counts"][th.ALERT] == sum(r["status"] == th.ALERT for r in rows)
    assert summary["alerts"] == json.loads(json.dumps(alerts_of(rows)))
    document = json.loads(Path(summary["report_json"]).read_text())
    assert [r["id"] for r in document["results"]] == [r["id"] for r in rows]
    assert [r["value"] for r in document["results"]] == [r["value"] for r in rows]
    page = Path(summary["report"]).read_text()
    assert "person_income" in page and "data:image/png;base64," in page
    for section in ("Input drift", "Score distribution", "Decisions", "Data quality",
                    "Training-serving skew", "Accuracy by vintage", "Latency"):  # fmt: skip
        assert section in page
    daily = [r for r in rows if r["section"] == "decision_drift" and r["metric"] != "psi"]
    assert len(daily) == 3 * 7  # three decisions' rates for each day of the window


def test_a_run_without_its_report_stores_the_same_results(logged):
    settings, model, _ = logged
    reports = settings.reports_dir / "monitoring"
    before = set(reports.iterdir()) if reports.exists() else set()
    quiet = monitor(settings, as_of=DRIFTED_AS_OF, model_tag=model.tag, report=False)
    assert quiet["report"] is None and quiet["report_json"] is None
    assert (set(reports.iterdir()) if reports.exists() else set()) == before  # nothing written
    engine = get_engine(settings)
    run, rows = stored_run(engine, quiet["run_id"])
    assert run["report"] is None and run["status"] == quiet["status"] == th.ALERT
    full = monitor(settings, as_of=DRIFTED_AS_OF, model_tag=model.tag)
    assert Path(full["report"]).exists()

    def results(found: list[dict]) -> list[tuple]:
        # whylogs' p-values read randomized sketches (KLL, merged per run): they vary run to run.
        return [(r["section"], r["metric"], r["subject"], r["status"])
                + (() if r["metric"] in ("ks_pvalue", "chi2_pvalue") else (r["value"],))
                for r in found]  # fmt: skip

    assert results(rows) == results(stored_run(engine, full["run_id"])[1])
    assert quiet["alerts"] == full["alerts"]


def test_a_run_that_cannot_finish_is_stored_as_failed(logged):
    settings, _, _ = logged
    with pytest.raises(RuntimeError, match="credit_risk:nosuchmodel") as failure:
        monitor(settings, as_of=CLEAN_AS_OF, model_tag="credit_risk:nosuchmodel")
    run_id = int(str(failure.value).split()[2])
    with get_engine(settings).connect() as conn:
        run = conn.execute(sa.select(monitoring_runs).where(monitoring_runs.c.id == run_id))
        run = run.mappings().one()
    assert run["status"] == "failed"
    assert "nosuchmodel" in run["summary"]["error"]


def test_a_run_on_postgresql(logged, throwaway_postgres):
    settings, model, counts = logged
    as_of = CLEAN_AS_OF - timedelta(days=30)  # windows of its own (profiles are per home)
    with throwaway_postgres() as url:
        production = settings.model_copy(update={"database_url": url})
        engine = get_engine(production)
        try:
            logged_rows = _log(engine, model, counts["loans"].head(400), as_of, "pg")
            _rejections(engine, as_of - timedelta(hours=1), 500, {"loan_intent": 50})
            summary = monitor(production, as_of=as_of, model_tag=model.tag)
            run, rows = stored_run(engine, summary["run_id"])
        finally:
            engine.dispose()
    assert run["status"] == summary["status"] == th.ALERT
    assert summary["counts"]["results"] == len(rows)
    volume = next(r for r in rows if r["section"] == "quality" and r["metric"] == "rows")
    assert volume["value"] == logged_rows
    assert [a["subject"] for a in summary["alerts"]] == ["predict:loan_intent"]


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("7d", timedelta(days=7)),
        ("24h", timedelta(days=1)),
        ("90m", timedelta(minutes=90)),
        ("1.5d", timedelta(hours=36)),
    ],
)
def test_windows_are_read_from_the_command_line(text, span):
    assert parse_window(text) == span


@pytest.mark.parametrize("text", ["", "7", "0d", "-1d", "7w", "d"])
def test_a_bad_window_is_refused_naming_it(text):
    with pytest.raises(ValueError, match=f"{re.escape(repr(text))}: expected"):
        parse_window(text)


def test_a_runs_status_is_its_worst_judged_result():
    assert overall([th.INFO, th.ESTIMATED]) == th.OK  # nothing judged: nothing wrong
    assert overall([th.OK, th.INFO, th.WATCH]) == th.WATCH
    assert overall([th.WATCH, th.ALERT, th.ESTIMATED]) == th.ALERT
    assert overall([]) == th.OK
