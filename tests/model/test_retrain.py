"""`creditflow retrain` on the demo home: only what was known as of the run, a run killed
mid-training that changes nothing, and the next run that trains, gates and promotes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import pandas as pd
import sqlalchemy as sa

from creditflow.config import environment
from creditflow.contract import APPLICATIONS, LOANS
from creditflow.db import get_engine
from creditflow.feedback.labels import record_label
from creditflow.feedback.logged_predictions import prediction_row, write_predictions
from creditflow.ingestion.offline import read_table
from creditflow.model import stages
from creditflow.retraining.job import TrainingBudget, history, retrain
from creditflow.retraining.lock import retrain_lock
from creditflow.tables import labels, model_stages, predictions
from creditflow.training.dataset import build_training_set
from creditflow.training.promotion import promote

SMALL = TrainingBudget(trials=0, variants=False)


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def test_as_of_in_the_past_ignores_later_loans_and_labels(demo_home):
    settings, engine = demo_home.settings, get_engine(demo_home.settings)
    service = demo_home.training["feature_service"]
    loans = read_table(settings, LOANS)
    times = pd.to_datetime(loans[LOANS.timestamp], utc=True)
    as_of = times.quantile(0.6).to_pydatetime()
    picked = loans[times < as_of - timedelta(days=30)].head(2)
    rows = [prediction_row(settings, {k: _plain(r[k]) for k in APPLICATIONS.names},
                           r[LOANS.timestamp].to_pydatetime() + timedelta(hours=1))
            for r in picked.to_dict("records")]  # fmt: skip
    ids = write_predictions(engine, rows)
    try:
        before = build_training_set(service, settings, as_of=as_of)
        # One outcome known a day before as_of, one received a day after it.
        record_label(engine, ids[0], 1, rows[0]["at"] + timedelta(days=1),
                     received_at=as_of - timedelta(days=1))  # fmt: skip
        record_label(engine, ids[1], 0, rows[1]["at"] + timedelta(days=1),
                     received_at=as_of + timedelta(days=1))  # fmt: skip
        data = build_training_set(service, settings, as_of=as_of)
        event_times = pd.to_datetime(data.frame[LOANS.timestamp], utc=True)
        assert event_times.max() <= as_of
        created = pd.to_datetime(loans["created_timestamp"], utc=True)
        assert data.labeled_rows == int(((times <= as_of) & (created <= as_of)).sum())
        assert data.labeled_rows < len(loans)
        assert data.feedback["rows"] == before.feedback["rows"] + 1  # the later label is unseen
        feedback = data.frame[data.frame[LOANS.key[0]] < 0]
        assert pd.Timestamp(rows[0]["at"]) in set(pd.to_datetime(feedback[LOANS.timestamp]))
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(labels).where(labels.c.prediction_id.in_(ids)))
            conn.execute(sa.delete(predictions).where(predictions.c.prediction_id.in_(ids)))


KILLED_RUN = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from creditflow.retraining.job import TrainingBudget, retrain
    retrain(budget=TrainingBudget(trials=0, variants=False))
""")


def test_a_killed_run_changes_nothing_and_the_next_one_promotes(demo_home,
                                                               application_only_model):  # fmt: skip
    settings, engine = demo_home.settings, get_engine(demo_home.settings)
    original = stages.champion_tag(settings)
    # A weak champion (application fields only), so that a retrained model is clearly better.
    weak = application_only_model
    promote(weak, force=True, settings=settings)
    try:
        env = {**os.environ, **environment(settings), "CREDITFLOW_HOME": str(settings.home)}
        child = subprocess.Popen([sys.executable, "-c", KILLED_RUN], env=env,
                                 stderr=subprocess.PIPE, text=True)  # fmt: skip
        for line in child.stderr:  # wait until it is training, then kill it
            if "training a challenger" in line:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert stages.champion_tag(settings) == weak  # the champion is untouched
        with retrain_lock(engine, settings.home) as held:
            assert held  # released by the OS
        assert history(engine, 1)[0]["outcome"] == "running"

        summary = retrain(settings, budget=SMALL)

        assert summary["busy"] is False and summary["interrupted_runs_closed"] == 1
        assert summary["outcome"] == "promoted", summary["reasons"]
        assert summary["champion"] == summary["challenger"] != weak
        interval = summary["decision"]["interval"]
        assert interval["low"] > 0 and interval["resamples"] == 1000
        runs = history(engine, 2)
        assert [r["outcome"] for r in runs] == ["promoted", "failed"]
        assert "interrupted" in runs[1]["error"]
        assert runs[0]["decision"]["interval"] == interval
        assert runs[0]["metrics"]["champion"]["roc_auc"] < runs[0]["metrics"]["challenger"][
            "roc_auc"]  # fmt: skip
        assert runs[0]["rows"]["comparison"] >= 500
        event = stages.events(settings)[0]
        assert (event["tag"], event["action"]) == (summary["challenger"], "promoted")
        assert event["details"]["interval"] == interval
        # No model of the killed run (or any other) is champion beside the promoted one.
        assert list(stages.stages(settings).values()).count("champion") == 1
    finally:
        with engine.begin() as conn:  # the session's demo home keeps its champion
            champion = model_stages.c.stage == "champion"
            conn.execute(model_stages.update().where(champion).values(stage="retired"))
            conn.execute(model_stages.update().where(model_stages.c.tag == original)
                         .values(stage="champion"))  # fmt: skip


def _flagged_run(engine, as_of, days: int, broken: bool) -> int:
    """A monitoring run over the ``days`` before ``as_of``: a data-quality alert, or healthy."""
    from creditflow.tables import monitoring_results, monitoring_runs

    with engine.begin() as conn:
        run_id = conn.execute(monitoring_runs.insert().returning(monitoring_runs.c.id), {
            "as_of": as_of, "window_start": as_of - timedelta(days=days), "window_end": as_of,
            "status": "alert" if broken else "ok", "summary": {}, "started_at": as_of,
            "finished_at": as_of,
        }).scalar_one()  # fmt: skip
        if broken:
            conn.execute(monitoring_results.insert(), {
                "run_id": run_id, "section": "drift", "metric": "median_ratio",
                "subject": "person_income", "value": 0.001, "threshold": 0.05, "status": "alert",
                "details": {"data_quality": True},
            })  # fmt: skip
    return run_id


def test_outcomes_of_a_window_flagged_as_broken_are_never_trained_on(demo_home):
    """The flag clears before the outcomes of the broken window arrive: the retrain that comes
    after leaves those feedback rows out (and judges without them), and says how many."""
    from creditflow import clock
    from creditflow.retraining.job import flagged_windows
    from creditflow.tables import monitoring_results, monitoring_runs

    settings, engine = demo_home.settings, get_engine(demo_home.settings)
    original = stages.champion_tag(settings)
    now = clock.now()
    loans = read_table(settings, LOANS).head(5)
    broken_at, clean_at = now - timedelta(days=20), now - timedelta(days=40)
    rows = [prediction_row(settings, {k: _plain(r[k]) for k in APPLICATIONS.names},
                           broken_at if i < 3 else clean_at)
            for i, r in enumerate(loans.to_dict("records"))]  # fmt: skip
    ids = write_predictions(engine, rows)
    # The latest run is healthy, so retraining goes ahead.
    runs = [_flagged_run(engine, now - timedelta(days=18), 7, broken=True),
            _flagged_run(engine, now, 7, broken=False)]  # fmt: skip
    try:
        for i, pid in enumerate(ids):
            record_label(engine, pid, i % 2, rows[i]["at"] + timedelta(days=1),
                         received_at=now - timedelta(hours=2))  # fmt: skip
        # (Other tests' monitoring runs may have flagged windows of their own.)
        flagged = (now - timedelta(days=25), now - timedelta(days=18))
        windows = flagged_windows(engine, now)
        assert any(a <= flagged[0] and b >= flagged[1] for a, b in windows)
        summary = retrain(settings, budget=SMALL)
        assert summary["outcome"] in ("promoted", "kept"), summary["reasons"]
        assert summary["rows"]["feedback"]["in_flagged_windows"] >= 3
        assert summary["rows"]["flagged_windows"] == [[str(a), str(b)] for a, b in windows]
        data = build_training_set(demo_home.training["feature_service"], settings,
                                  excluded=flagged_windows(engine, now))  # fmt: skip
        times = set(pd.to_datetime(data.frame[LOANS.timestamp], utc=True))
        assert pd.Timestamp(clean_at) in times and pd.Timestamp(broken_at) not in times
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(labels).where(labels.c.prediction_id.in_(ids)))
            conn.execute(sa.delete(predictions).where(predictions.c.prediction_id.in_(ids)))
            conn.execute(sa.delete(monitoring_results).where(monitoring_results.c.run_id.in_(runs)))
            conn.execute(sa.delete(monitoring_runs).where(monitoring_runs.c.id.in_(runs)))
            champion = model_stages.c.stage == "champion"
            conn.execute(model_stages.update().where(champion).values(stage="retired"))
            conn.execute(model_stages.update().where(model_stages.c.tag == original)
                         .values(stage="champion"))  # fmt: skip
