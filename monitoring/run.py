"""`creditflow monitor`: one run of every check, stored as rows, then the report and summary.

A run looks at a window ``(as_of - window, as_of]`` (``as_of`` default: the clock's now) and at
the models judged in it: the champion as of ``as_of`` and every model that served in the
window (or the one asked for). It records one ``monitoring_runs`` row ("running", then the
worst status of its results, or "failed" with the error) and every check's result as a
``monitoring_results`` row; the HTML/JSON report and the JSON summary are then built from the
rows read back, never from the values in memory, so what is reported is what is stored (and
what the service's gauges read).

Only data recorded up to ``as_of`` is read: predictions with ``at <= as_of``, labels received
by then, service statistics of windows started by then, and the model stages as they were.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from creditflow import clock
from creditflow.config import Settings, get_settings
from creditflow.db import get_engine
from creditflow.model.stages import champion_tag
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.logged import models_that_served
from creditflow.monitoring.results import Result
from creditflow.monitoring.window import Window
from creditflow.reports import clean
from creditflow.tables import model_events, monitoring_results, monitoring_runs

log = logging.getLogger(__name__)

RUNNING, FAILED = "running", "failed"
# The order sections are listed in (summary alerts, report).
SECTIONS = (
    "drift",
    "score_drift",
    "decision_drift",
    "quality",
    "skew",
    "latency",
    "accuracy",
    "estimate",
)


def champion_at(engine: sa.Engine, as_of: datetime, settings: Settings) -> str | None:
    """The champion as of ``as_of``: the model of the last promotion or rollback by then. A
    registry without any such event (a stage set by hand) has the current champion."""
    events = model_events.c
    changes = events.action.in_(("promoted", "rolled_back"))
    query = (
        sa.select(events.tag)
        .where(changes, events.at <= as_of)
        .order_by(events.at.desc(), events.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        tag = conn.execute(query).scalar()
        if tag is not None:
            return tag
        ever = conn.execute(sa.select(sa.func.count()).where(changes)).scalar_one()
    return None if ever else champion_tag(settings)


def judged_models(
    engine: sa.Engine, settings: Settings, start: datetime, as_of: datetime
) -> list[str]:
    """The champion as of ``as_of`` first, then every other model that served in the window."""
    champion = champion_at(engine, as_of, settings)
    served = models_that_served(engine, start, as_of)
    return list(dict.fromkeys([*([champion] if champion else []), *served]))


def model_results(window: Window) -> list[Result]:
    """Every per-model check of one window."""
    from creditflow.monitoring.accuracy import accuracy_results
    from creditflow.monitoring.drift import drift_results
    from creditflow.monitoring.quality import quality_results
    from creditflow.monitoring.skew import skew_results

    results = drift_results(window)
    results += quality_results(window)
    results += accuracy_results(window)
    results += skew_results(window)
    return results


def service_results(
    settings: Settings, engine: sa.Engine, start: datetime, as_of: datetime, model_tag: str | None
) -> list[Result]:
    """The checks of the service as a whole (not per model): latency and errors by endpoint,
    and the API's contract rejections."""
    from creditflow.monitoring.latency import latency_results
    from creditflow.monitoring.quality import rejection_results

    window = Window(settings, engine, model_tag or "", start, as_of)
    return latency_results(window) + rejection_results(engine, start, as_of)


def monitor(
    settings: Settings | None = None,
    as_of: datetime | None = None,
    window: timedelta = th.DEFAULT_WINDOW,
    model_tag: str | None = None,
    *,
    report: bool = True,
) -> dict:
    """Run every check on ``(as_of - window, as_of]``, store the results, write the report and
    return the summary (from the stored rows). A check that fails marks the run "failed" with
    the error and raises.

    ``report=False``: no HTML/JSON report (``report`` and ``report_json`` are None in the
    summary); the results are stored all the same, for a job that runs often and reads the
    rows (the plots are most of a run's time once its checks are quick)."""
    settings = settings or get_settings()
    as_of = clock.now() if as_of is None else clock.as_utc(as_of)
    if window <= timedelta(0):
        raise ValueError(f"window {window}: must be positive")
    start = as_of - window
    engine = get_engine(settings)
    run_id = _begin(engine, as_of, start)
    try:
        models = [model_tag] if model_tag else judged_models(engine, settings, start, as_of)
        results: list[Result] = []
        for tag in models:
            results += model_results(Window(settings, engine, tag, start, as_of))
        results += service_results(settings, engine, start, as_of, models[0] if models else None)
        _store(engine, run_id, results)
        run, rows = stored_run(engine, run_id)
        summary = summarize(run, rows, models)
        if report:
            from creditflow.monitoring.report import report_dir, write_report

            paths = write_report(report_dir(settings, run), run, rows, summary)
            summary["report"] = str(paths["html"])
            summary["report_json"] = str(paths["json"])
        else:
            summary["report"] = summary["report_json"] = None
        _finish(engine, run_id, summary["status"], summary, summary["report"])
        return summary
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        log.exception("monitor run %s failed", run_id)
        _finish(engine, run_id, FAILED, {"ok": False, "error": error, "run_id": run_id}, None)
        raise RuntimeError(f"monitor run {run_id} failed: {error}") from err


def _begin(engine: sa.Engine, as_of: datetime, start: datetime) -> int:
    with engine.begin() as conn:
        inserted = conn.execute(
            monitoring_runs.insert().values(
                as_of=as_of,
                window_start=start,
                window_end=as_of,
                status=RUNNING,
                summary={},
                started_at=clock.now(),
            )
        )
        return int(inserted.inserted_primary_key[0])


def _finish(engine: sa.Engine, run_id: int, status: str, summary: dict, report: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            monitoring_runs.update()
            .where(monitoring_runs.c.id == run_id)
            .values(status=status, summary=clean(summary), report=report, finished_at=clock.now())
        )


def _store(engine: sa.Engine, run_id: int, results: list[Result]) -> None:
    rows = []
    for result in results:
        if result.status not in th.SEVERITY:
            raise ValueError(
                f"{result.section}/{result.metric}/{result.subject}: unknown status "
                f"{result.status!r}"
            )
        row = clean(result.row(run_id))
        rows.append(row)
    if rows:
        with engine.begin() as conn:
            conn.execute(monitoring_results.insert(), rows)


def stored_run(engine: sa.Engine, run_id: int) -> tuple[dict, list[dict]]:
    """A run's row and its results' rows, in the order they were stored."""
    with engine.connect() as conn:
        run = conn.execute(sa.select(monitoring_runs).where(monitoring_runs.c.id == run_id))
        run = dict(run.mappings().one())
        rows = (
            conn.execute(
                sa.select(monitoring_results)
                .where(monitoring_results.c.run_id == run_id)
                .order_by(monitoring_results.c.id)
            )
            .mappings()
            .all()
        )
    return run, [dict(row) for row in rows]


def _section_rank(section: str) -> int:
    return SECTIONS.index(section) if section in SECTIONS else len(SECTIONS)


def alerts_of(rows: list[dict]) -> list[dict]:
    """The alerting results, by section, drift by impact (PSI x importance share) first."""
    alerting = [row for row in rows if row["status"] == th.ALERT]
    alerting.sort(
        key=lambda r: (
            _section_rank(r["section"]),
            -((r["details"] or {}).get("impact") or 0.0),
            -(r["value"] or 0.0),
        )
    )
    alerts = []
    for row in alerting:
        alert = {key: row[key] for key in ("section", "metric", "subject", "value", "threshold")}
        alert["model"] = row["model_tag"]
        if (row["details"] or {}).get("data_quality"):  # broken data: retraining refuses it
            alert["data_quality"] = True
            alert["suspected"] = row["details"].get("suspected")
        drivers = (row["details"] or {}).get("drivers")
        if drivers:
            alert["features"] = [d["feature"] for d in drivers]
        alerts.append(alert)
    return alerts


def overall(statuses) -> str:
    """A run's status: its worst result's, where INFO and ESTIMATED (not judged) count as OK."""
    found = th.worst(statuses)
    return found if found in (th.WATCH, th.ALERT) else th.OK


def summarize(run: dict, rows: list[dict], models: list[str]) -> dict:
    """The JSON summary of a run, from its stored rows."""
    counts = {status: 0 for status in (th.OK, th.WATCH, th.ALERT, th.INFO, th.ESTIMATED)}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    start, end = clock.as_utc(run["window_start"]), clock.as_utc(run["window_end"])
    return {
        "ok": True,
        "run_id": run["id"],
        "status": overall(row["status"] for row in rows),
        "as_of": clock.as_utc(run["as_of"]).isoformat(),
        "window": {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "days": round((end - start) / timedelta(days=1), 4),
        },
        "models": models,
        "alerts": alerts_of(rows),
        "counts": {"results": len(rows), **counts},
    }
