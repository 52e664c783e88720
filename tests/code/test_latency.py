"""Latency quantiles and error rates from the service's per-window statistics
(monitoring/latency.py), on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from creditflow.migrate import upgrade_engine
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.latency import (
    HistogramError,
    latency_results,
    merge,
    parse_histogram,
    quantile,
)
from creditflow.monitoring.window import Window
from creditflow.tables import service_stats

AS_OF = datetime(2026, 3, 8, tzinfo=UTC)
START = AS_OF - timedelta(days=7)
BOUNDS = [0.01, 0.05, 0.1, 0.5, None]


def _stats(at, endpoint, counts, bounds=BOUNDS, errors=0, rejected=0, unauthorized=0,
           rejections=None, worker="w1") -> dict:  # fmt: skip
    spent = sum(m * c for m, c in zip([0.005, 0.03, 0.075, 0.3, 1.0], counts, strict=False))
    return {
        "window_start": at, "window_s": 10.0, "worker": worker, "endpoint": endpoint,
        "requests": sum(counts) + rejected + unauthorized, "errors": errors, "rejected": rejected,
        "unauthorized": unauthorized, "latency_sum_s": spent,
        "latency_histogram": {"le": bounds, "counts": counts}, "rejections": rejections or {},
    }  # fmt: skip


@pytest.fixture()
def db(sql_engine):
    upgrade_engine(sql_engine)
    return sql_engine


def _by(results, metric, subject):
    (found,) = [r for r in results if (r.metric, r.subject) == (metric, subject)]
    return found


def test_quantiles_interpolate_within_buckets():
    histogram = parse_histogram({"le": BOUNDS, "counts": [100, 60, 20, 15, 5]})
    assert quantile(histogram, 0.5) == pytest.approx(0.01)  # rank 100: the first bucket's top
    assert quantile(histogram, 0.25) == pytest.approx(0.005)  # rank 50: half of (0, 0.01]
    assert quantile(histogram, 0.65) == pytest.approx(0.01 + 0.04 * 30 / 60)  # rank 130
    assert quantile(histogram, 0.95) == pytest.approx(0.1 + 0.4 * 10 / 15)  # rank 190
    # Rank 198 lies in the open-ended bucket: its lower bound, a floor.
    assert quantile(histogram, 0.99) == pytest.approx(0.5)
    assert quantile(parse_histogram({"le": BOUNDS, "counts": [0] * 5}), 0.5) is None


def test_the_open_bound_may_be_null_infinity_or_a_large_number():
    counts = [1, 2, 3, 4, 5]
    expected = parse_histogram({"le": BOUNDS, "counts": counts})
    assert math.inf in expected
    for last in (float("inf"), 1e9, 1.7976931348623157e308):
        assert parse_histogram({"le": [*BOUNDS[:-1], last], "counts": counts}) == expected


@pytest.mark.parametrize(
    ("histogram", "names"),
    [
        ({"le": [0.1, 0.2], "counts": [1]}, "one length"),
        ({"le": [0.2, 0.1], "counts": [1, 1]}, "increase"),
        ({"le": [0.1, None, None], "counts": [1, 1, 1]}, "increase"),
        ({"le": [0.1, "fast"], "counts": [1, 1]}, "le[1] = 'fast'"),
        ({"le": [0.1, 0.2], "counts": [1, -1]}, "counts[1] = -1"),
        ({"le": [0.1, 0.2], "counts": [1, 0.5]}, "counts[1] = 0.5"),
        ({"buckets": [0.1]}, "expected"),
    ],
)
def test_a_malformed_histogram_is_refused_naming_the_row(histogram, names):
    with pytest.raises(HistogramError, match="service_stats row 7") as err:
        parse_histogram(histogram, "service_stats row 7")
    assert names in str(err.value)


def test_merging_adds_counts_bucket_by_bucket():
    one = parse_histogram({"le": BOUNDS, "counts": [50, 30, 10, 10, 0]})
    two = parse_histogram({"le": BOUNDS, "counts": [50, 30, 10, 5, 5]})
    assert list(merge([one, two]).values()) == [100, 60, 20, 15, 5]


def test_latency_by_endpoint_from_the_windows_rows(db, home):
    inside = AS_OF - timedelta(days=1)
    rows = [
        _stats(inside, "predict", [50, 30, 10, 10, 0], errors=3, rejected=4, unauthorized=0,
               rejections={"person_age": 3, "content-type": 1}),
        _stats(inside, "predict", [50, 30, 10, 5, 5], worker="w2", rejected=1,
               rejections={"person_age": 1}),
        _stats(AS_OF, "predict_batch", [10, 0, 0, 0, 0], unauthorized=0),  # as_of: included
        _stats(inside, "feedback", [0, 0, 0, 0, 0], unauthorized=6),
        # Outside (start, as_of]: ignored, however slow.
        _stats(START, "predict", [0, 0, 0, 0, 1000], errors=500),
        _stats(AS_OF + timedelta(seconds=1), "predict", [0, 0, 0, 0, 1000], errors=500),
    ]  # fmt: skip
    with db.begin() as conn:
        conn.execute(service_stats.insert(), rows)

    results = latency_results(Window(home, db, "unused", START, AS_OF))

    assert {r.subject for r in results} == {"predict", "predict_batch", "feedback"}
    assert all(r.section == "latency" and r.model_tag is None for r in results)
    p50, p95, p99 = (_by(results, m, "predict") for m in ("p50_s", "p95_s", "p99_s"))
    assert p50.value == pytest.approx(0.01)
    assert p95.value == pytest.approx(0.1 + 0.4 * 10 / 15)
    assert p99.value == pytest.approx(0.5)
    assert p99.status == th.status_of(0.5, th.P99_LATENCY_WATCH_S, th.P99_LATENCY_ALERT_S)
    assert p99.threshold == th.P99_LATENCY_ALERT_S
    assert p99.details["histogram"] == {"le": BOUNDS, "counts": [100, 60, 20, 15, 5]}
    assert p99.details["above_last_bound"] == 5 and p99.details["rows"] == 2
    assert _by(results, "requests", "predict").value == 205
    errors = _by(results, "error_rate", "predict")
    assert errors.value == pytest.approx(3 / 205) and errors.status == th.ALERT
    rejected = _by(results, "rejected", "predict")
    assert rejected.value == 5
    assert rejected.details["rejections"] == {"person_age": 4, "content-type": 1}
    assert _by(results, "p99_s", "predict_batch").value == pytest.approx(0.0099)
    assert _by(results, "p99_s", "predict_batch").status == th.OK
    assert _by(results, "error_rate", "predict_batch").status == th.OK
    assert _by(results, "unauthorized", "feedback").value == 6
    assert _by(results, "p99_s", "feedback").value is None  # nothing measured: INFO
    assert _by(results, "p99_s", "feedback").status == th.INFO


def test_a_malformed_row_fails_the_check_naming_it(db, home):
    with db.begin() as conn:
        conn.execute(service_stats.insert(), [_stats(AS_OF, "predict", [1, 2])])
        row_id = conn.execute(service_stats.select()).first().id
    with pytest.raises(HistogramError, match=f"service_stats row {row_id} latency_histogram"):
        latency_results(Window(home, db, "unused", START, AS_OF))
