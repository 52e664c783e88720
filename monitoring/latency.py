"""Latency and errors by endpoint, from the statistics the service writes per time window.

Prometheus keeps no history and rejected requests never reach the prediction log, so the
service writes, per time window, worker and endpoint, a row of ``service_stats``: request,
5xx, rejection and 401 counts and a latency histogram. Histograms merge by adding counts, so
the quantiles of a whole monitor window come from the sum of its rows' histograms.

Histogram semantics (``latency_histogram``): ``{"le": [upper bounds, s], "counts": [...]}``,
``counts[i]`` the requests that took at most ``le[i]`` and more than ``le[i - 1]`` (per
bucket, not cumulative; the first bucket starts at 0). The last bound may be open-ended:
written as null (JSON has no infinity), as infinity, or as any number of at least
``UNBOUNDED_S``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from creditflow import clock
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.results import Result
from creditflow.monitoring.window import Window
from creditflow.tables import service_stats

SECTION = "latency"
QUANTILES = {"p50_s": 0.50, "p95_s": 0.95, "p99_s": 0.99}
# A bucket bound at least this large (s) stands for +infinity: no request waits a day (the
# service's own timeout is seconds), and some writers put a large number where JSON has no inf.
UNBOUNDED_S = 86_400.0


class HistogramError(ValueError):
    """A ``latency_histogram`` that is not bounds and per-bucket counts."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_histogram(value: Any, where: str = "latency_histogram") -> dict[float, int]:
    """Counts by upper bound (``math.inf`` for the open-ended bucket); ``where`` names the row
    in the error for anything else: lengths that differ, bounds not increasing, a negative or
    fractional count."""
    if not isinstance(value, dict) or not {"le", "counts"} <= value.keys():
        raise HistogramError(f"{where}: expected {{'le': [...], 'counts': [...]}}, got {value!r}")
    bounds, counts = value["le"], value["counts"]
    if not isinstance(bounds, list) or not isinstance(counts, list) or len(bounds) != len(counts):
        raise HistogramError(f"{where}: 'le' and 'counts' must be lists of one length, got "
                             f"{bounds!r} and {counts!r}")  # fmt: skip
    merged: dict[float, int] = {}
    previous = -math.inf
    for i, (bound, count) in enumerate(zip(bounds, counts, strict=True)):
        if not (bound is None or _number(bound)):
            raise HistogramError(f"{where}: le[{i}] = {bound!r} is not a bound in seconds")
        upper = math.inf if bound is None or bound >= UNBOUNDED_S else float(bound)
        if not (upper > previous and upper >= 0):  # NaN fails too
            raise HistogramError(f"{where}: bounds must increase from 0, got {bounds!r}")
        if not (_number(count) and float(count).is_integer() and count >= 0):
            raise HistogramError(f"{where}: counts[{i}] = {count!r} is not a count")
        merged[upper] = int(count)
        previous = upper
    return merged


def merge(histograms: list[dict[float, int]]) -> dict[float, int]:
    """The sum of histograms. Rows with the same bounds add exactly; rows whose bounds differ
    add bucket by bucket at each row's own upper bounds, so a quantile is interpolated over the
    finer union of bounds (approximate where the rows disagree)."""
    total: dict[float, int] = defaultdict(int)
    for histogram in histograms:
        for upper, count in histogram.items():
            total[upper] += count
    return dict(sorted(total.items()))


def quantile(histogram: dict[float, int], q: float) -> float | None:
    """The ``q`` quantile of a merged histogram, interpolated linearly within its bucket (as
    Prometheus's ``histogram_quantile`` does): the bucket (lower, upper] holding the rank
    ``q x total`` is assumed uniformly filled. A rank in the open-ended last bucket gives that
    bucket's lower bound (a floor: the histogram does not say how slow). None with no counts."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = q * total
    lower, seen = 0.0, 0
    for upper, count in histogram.items():
        if count and seen + count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return lower


def _stats_rows(engine: sa.Engine, start: datetime, as_of: datetime) -> list[sa.Row]:
    query = (
        sa.select(service_stats)
        .where(service_stats.c.window_start > start, service_stats.c.window_start <= as_of)
        .order_by(service_stats.c.id)
    )
    with engine.connect() as conn:
        return conn.execute(query).all()


def _endpoint_results(endpoint: str, rows: list[sa.Row]) -> list[Result]:
    histogram = merge([
        parse_histogram(r.latency_histogram, f"service_stats row {r.id} latency_histogram")
        for r in rows
    ])  # fmt: skip
    requests = sum(r.requests for r in rows)
    errors = sum(r.errors for r in rows)
    rejections: dict[str, int] = defaultdict(int)
    for r in rows:
        for reason, count in (r.rejections or {}).items():
            rejections[reason] += int(count)
    measured = sum(histogram.values())
    details = {
        "requests": requests,
        "rows": len(rows),
        "mean_s": sum(r.latency_sum_s for r in rows) / measured if measured else None,
    }
    shape = {
        "histogram": {
            "le": [None if math.isinf(b) else b for b in histogram],
            "counts": list(histogram.values()),
        },
        "above_last_bound": histogram.get(math.inf, 0),
    }

    def result(metric, value, status=th.INFO, threshold=None, **extra) -> Result:
        return Result(SECTION, metric, endpoint, value, status, threshold, None,
                      {**details, **extra})  # fmt: skip

    found = []
    for metric, q in QUANTILES.items():
        value = quantile(histogram, q)
        if metric == "p99_s":
            status = th.status_of(value, th.P99_LATENCY_WATCH_S, th.P99_LATENCY_ALERT_S)
            found.append(result(metric, value, status, th.P99_LATENCY_ALERT_S, **shape))
        else:
            found.append(result(metric, value, **shape))
    error_rate = errors / requests if requests else None
    return [
        *found,
        result("requests", float(requests)),
        result("error_rate", error_rate,
               th.status_of(error_rate, th.ERROR_RATE_WATCH, th.ERROR_RATE_ALERT),
               th.ERROR_RATE_ALERT, errors=errors),
        result("rejected", float(sum(r.rejected for r in rows)), rejections=dict(rejections)),
        result("unauthorized", float(sum(r.unauthorized for r in rows))),
    ]  # fmt: skip


def latency_results(window: Window) -> list[Result]:
    """Per endpoint (subject), from the ``service_stats`` rows whose window started in
    (start, as_of]: ``p50_s``, ``p95_s`` (INFO) and ``p99_s`` (judged by ``P99_LATENCY_*``),
    ``requests``, ``error_rate`` (5xx / requests, judged by ``ERROR_RATE_*``), ``rejected`` and
    ``unauthorized`` (counts, INFO). model_tag None: the service, not a model.

    Every result's details: ``requests``, ``rows`` (statistics rows merged), ``mean_s``
    (latency sum / histogram count); the quantiles' also ``histogram`` ({"le": [...],
    "counts": [...]}, the merged one, the open-ended bound as null) and ``above_last_bound``
    (requests in the open-ended bucket); ``error_rate``'s ``errors``; ``rejected``'s
    ``rejections`` by field or rule. Raises HistogramError naming the row for a histogram
    that is not bounds and counts.
    """
    start, as_of = clock.as_utc(window.start), clock.as_utc(window.as_of)
    by_endpoint: dict[str, list[sa.Row]] = defaultdict(list)
    for row in _stats_rows(window.engine, start, as_of):
        by_endpoint[row.endpoint].append(row)
    found: list[Result] = []
    for endpoint, rows in sorted(by_endpoint.items()):
        found += _endpoint_results(endpoint, rows)
    return found
