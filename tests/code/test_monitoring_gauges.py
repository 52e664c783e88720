"""/metrics gauges of the latest monitoring run (bento/monitoring_gauges.py), from rows of our
tables: the newest finished run, the served model's results, bounded labels, stale series NaN."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prometheus_client import REGISTRY

from creditflow.bento.monitoring_gauges import MAX_VINTAGES, MonitoringGauges
from creditflow.tables import metadata, monitoring_results, monitoring_runs

MODEL = "credit_risk:served"
T0 = datetime(2026, 11, 30, tzinfo=UTC)


def _run(engine, as_of: datetime, results: list[tuple], status="ok", finished=True) -> int:
    """A stored run with ``results`` as (section, metric, subject, value, status[, model])."""
    with engine.begin() as conn:
        run_id = conn.execute(sa.insert(monitoring_runs).values(
            as_of=as_of, window_start=as_of - timedelta(days=7), window_end=as_of,
            status=status, summary={}, started_at=as_of,
            finished_at=as_of if finished else None,
        ).returning(monitoring_runs.c.id)).scalar_one()  # fmt: skip
        if results:
            conn.execute(sa.insert(monitoring_results), [
                {"run_id": run_id, "section": r[0], "metric": r[1], "subject": r[2],
                 "value": r[3], "status": r[4], "model_tag": r[5] if len(r) > 5 else MODEL,
                 "details": {}} for r in results
            ])  # fmt: skip
    return run_id


def _value(name: str, section: str, metric: str, subject: str) -> float | None:
    labels = {"section": section, "metric": metric, "subject": subject}
    return REGISTRY.get_sample_value(name, labels)


def test_the_gauges_show_the_latest_finished_run_of_the_served_model(sql_engine):
    """On SQLite and PostgreSQL."""
    metadata.create_all(sql_engine)
    gauges = MonitoringGauges(sql_engine, MODEL, interval_s=60)
    assert not gauges.refresh()  # no run yet
    _run(sql_engine, T0, [
        ("drift", "psi", "person_income", 0.31, "alert"),
        ("drift", "psi", "loan_amnt", 0.12, "watch"),
        ("latency", "p99_s", "predict", 0.02, "ok", None),  # of no model: the service's
        ("drift", "psi", "loan_intent", 0.9, "alert", "credit_risk:other"),  # another model
        ("estimate", "expected_default_rate", "all", None, "estimated"),
    ], status="alert")  # fmt: skip
    _run(sql_engine, T0 - timedelta(days=1), [("drift", "psi", "person_income", 0.0, "ok")])
    _run(sql_engine, T0 + timedelta(days=1), [("drift", "psi", "x", 1, "ok")], finished=False)
    assert gauges.refresh()
    value = "creditflow_monitoring_value"
    status = "creditflow_monitoring_status"
    assert _value(value, "drift", "psi", "person_income") == 0.31
    assert _value(status, "drift", "psi", "person_income") == 2
    assert _value(status, "drift", "psi", "loan_amnt") == 1
    assert _value(value, "latency", "p99_s", "predict") == 0.02
    assert _value(status, "latency", "p99_s", "predict") == 0
    assert math.isnan(_value(value, "estimate", "expected_default_rate", "all"))
    assert _value(value, "drift", "psi", "loan_intent") is None  # not the served model's
    assert _value(value, "drift", "psi", "x") is None  # a run still going
    assert REGISTRY.get_sample_value("creditflow_monitoring_run_timestamp_seconds") == (
        T0.timestamp()
    )
    assert REGISTRY.get_sample_value("creditflow_monitoring_run_status") == 2

    # A newer run without loan_amnt: its series goes NaN (prometheus_client cannot remove
    # a series in multiprocess mode).
    _run(sql_engine, T0 + timedelta(days=2), [("drift", "psi", "person_income", 0.05, "ok")])
    assert gauges.refresh()
    assert _value(value, "drift", "psi", "person_income") == 0.05
    assert _value(status, "drift", "psi", "person_income") == 0
    assert math.isnan(_value(value, "drift", "psi", "loan_amnt"))
    assert math.isnan(_value(status, "drift", "psi", "loan_amnt"))
    assert REGISTRY.get_sample_value("creditflow_monitoring_run_status") == 0


def test_the_labels_are_bounded(tmp_path):
    """The newest vintages only, a bounded number of subjects per metric; the rest counted."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'monitoring.db'}")
    metadata.create_all(engine)
    vintages = [f"{2020 + m // 12}-{m % 12 + 1:02d}" for m in range(MAX_VINTAGES + 6)]
    features = [f"feature_{i}" for i in range(100)]
    _run(engine, T0, [("accuracy", "roc_auc", v, 0.9, "ok") for v in vintages]
         + [("quality", "missing_share", f, 0.0, "ok") for f in features])  # fmt: skip
    assert MonitoringGauges(engine, MODEL, interval_s=60).refresh()
    shown = [
        v
        for v in vintages
        if _value("creditflow_monitoring_value", "accuracy", "roc_auc", v) is not None
    ]
    assert shown == vintages[-MAX_VINTAGES:]
    shown_features = [f for f in features if _value("creditflow_monitoring_value", "quality",
                                                    "missing_share", f) is not None]  # fmt: skip
    assert len(shown_features) == 64
    assert REGISTRY.get_sample_value("creditflow_monitoring_series_skipped") == 6 + 36


def test_no_database_yet_is_no_gauge_and_no_error(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # not migrated
    assert not MonitoringGauges(engine, MODEL, interval_s=60).refresh()
