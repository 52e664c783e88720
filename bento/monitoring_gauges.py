"""/metrics gauges of the latest monitoring results, read from our tables by a background thread.

`creditflow monitor` stores each run (``monitoring_runs``) and every value it computed
(``monitoring_results``). Every ``interval_s`` this reads the newest finished run (latest
``as_of``) and its results for the served model (and those of no model: latency, quality) with
plain SQL, never through creditflow.monitoring (a sibling layer), and sets:

- ``creditflow_monitoring_value{section,metric,subject}``: the value (NaN: none);
- ``creditflow_monitoring_status{section,metric,subject}``: 0 ok (or info, estimated), 1 watch,
  2 alert;
- ``creditflow_monitoring_run_timestamp_seconds`` (the run's ``as_of``) and
  ``creditflow_monitoring_run_status`` (0, 1, 2; 3: the run failed).

The labels are bounded: at most :data:`MAX_SUBJECTS` subjects per section and metric and the
:data:`MAX_VINTAGES` newest vintages (subjects such as ``2026-11``), :data:`MAX_SERIES` in all;
what is left out is counted in ``creditflow_monitoring_series_skipped``. BentoML's workers write
metrics to a multiprocess directory, where prometheus_client cannot remove a series: a series
of an earlier run that the newest one lacks is set to NaN instead. The gauges are
``livemostrecent``: every worker reads the same rows, /metrics shows the most recent value of
the live workers, and a worker's values go with it.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from prometheus_client import Gauge

from creditflow import clock
from creditflow.tables import monitoring_results, monitoring_runs

log = logging.getLogger(__name__)

MAX_SUBJECTS = 64  # per section and metric: the contract's features, endpoints, decisions
MAX_VINTAGES = 12  # the newest application months
MAX_SERIES = 1000
VINTAGE = re.compile(r"^\d{4}-\d{2}$")
# A result's status as a number; anything else (ok, info, estimated) is 0.
STATUS_LEVEL = {"watch": 1, "alert": 2}
FAILED_RUN = 3

LABELS = ["section", "metric", "subject"]
VALUE = Gauge(
    "creditflow_monitoring_value",
    "The latest monitoring run's values (creditflow monitor), for the served model",
    LABELS,
    multiprocess_mode="livemostrecent",
)
STATUS = Gauge(
    "creditflow_monitoring_status",
    "The latest monitoring run's statuses: 0 ok, 1 watch, 2 alert",
    LABELS,
    multiprocess_mode="livemostrecent",
)
RUN_TIMESTAMP = Gauge(
    "creditflow_monitoring_run_timestamp_seconds",
    "as_of of the latest monitoring run (Unix time)",
    multiprocess_mode="livemostrecent",
)
RUN_STATUS = Gauge(
    "creditflow_monitoring_run_status",
    "The latest monitoring run's status: 0 ok, 1 watch, 2 alert, 3 failed",
    multiprocess_mode="livemostrecent",
)
SKIPPED = Gauge(
    "creditflow_monitoring_series_skipped",
    "Results of the latest monitoring run left out of these gauges (label bounds)",
    multiprocess_mode="livemostrecent",
)

Series = tuple[str, str, str]  # section, metric, subject


def latest_run(engine: sa.Engine, model_tag: str | None) -> tuple[Any, list[Any]] | None:
    """The newest finished run (latest ``as_of``, then the last stored) and its results for
    ``model_tag`` and for no model; None if no run has finished."""
    runs = monitoring_runs.c
    results = monitoring_results.c
    with engine.connect() as conn:
        run = conn.execute(
            sa.select(runs.id, runs.as_of, runs.status)
            .where(runs.finished_at.is_not(None))
            .order_by(runs.as_of.desc(), runs.id.desc())
            .limit(1)
        ).first()
        if run is None:
            return None
        model = results.model_tag.is_(None)
        if model_tag is not None:
            model = model | (results.model_tag == model_tag)
        rows = conn.execute(
            sa.select(results.section, results.metric, results.subject, results.value,
                      results.status)
            .where(results.run_id == run.id, model)
            .order_by(results.id)
        ).all()  # fmt: skip
    return run, rows


def bounded(rows: Iterable[Any]) -> tuple[dict[Series, tuple[float, int]], int]:
    """The series to expose, {(section, metric, subject): (value, status level)}, within the
    bounds of the module's docstring, and how many results were left out."""
    by_metric: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        by_metric[row.section, row.metric].append(row)
    kept: dict[Series, tuple[float, int]] = {}
    skipped = 0
    for (section, metric), group in by_metric.items():
        vintages = sorted({r.subject for r in group if VINTAGE.match(r.subject)}, reverse=True)
        newest = set(vintages[:MAX_VINTAGES])
        subjects = 0
        for r in group:
            series = (section, metric, r.subject)
            if (VINTAGE.match(r.subject) and r.subject not in newest) or series in kept:
                skipped += 1  # an older vintage; a repeated series: the first counts
                continue
            if subjects >= MAX_SUBJECTS or len(kept) >= MAX_SERIES:
                skipped += 1
                continue
            subjects += 1
            value = math.nan if r.value is None else float(r.value)
            kept[series] = (value, STATUS_LEVEL.get(r.status, 0))
    return kept, skipped


class MonitoringGauges:
    """Refreshes the gauges every ``interval_s`` in a thread of its own (see the module)."""

    def __init__(self, engine: sa.Engine, model_tag: str | None, interval_s: float) -> None:
        self.engine = engine
        self.model_tag = model_tag
        self.interval_s = interval_s
        self._shown: set[Series] = set()
        self._run_id: int | None = None
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Reads the latest run and sets the gauges; False if there is none (or no database
        to ask: logged once until it answers again)."""
        try:
            latest = latest_run(self.engine, self.model_tag)
        except Exception as err:  # not migrated yet, or down: the next refresh tries again
            if not self._failing:
                log.warning("monitoring gauges not refreshed: %s", err)
            self._failing = True
            return False
        self._failing = False
        if latest is None:
            return False
        run, rows = latest
        series, skipped = bounded(rows)
        for stale in self._shown - series.keys():
            VALUE.labels(*stale).set(math.nan)
            STATUS.labels(*stale).set(math.nan)
        for labels, (value, level) in series.items():
            VALUE.labels(*labels).set(value)
            STATUS.labels(*labels).set(level)
        self._shown |= series.keys()
        RUN_TIMESTAMP.set(clock.as_utc(run.as_of).timestamp())  # SQLite: read back naive
        RUN_STATUS.set(FAILED_RUN if run.status == "failed" else STATUS_LEVEL.get(run.status, 0))
        SKIPPED.set(skipped)
        if run.id != self._run_id and skipped:
            log.warning("monitoring run %s: %d results not shown as gauges (label bounds)",
                        run.id, skipped)  # fmt: skip
        self._run_id = run.id
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="monitoring-gauges", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.refresh()
        while not self._stop.wait(self.interval_s):
            self.refresh()

    def close(self) -> None:
        self._stop.set()
