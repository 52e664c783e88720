"""Service statistics: counted per request in memory, written per window off the request path,
mergeable across windows and workers, nothing lost while the database is away."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from creditflow.bento.service_stats import LATENCY_BOUNDS_S, RequestStats, ServiceStats
from creditflow.tables import metadata, service_stats

ROUTES = frozenset({"/predict", "/feedback", "/metrics"})


def _rows(engine) -> list[dict]:
    with engine.connect() as conn:
        query = sa.select(service_stats).order_by(service_stats.c.id)
        return [row._asdict() for row in conn.execute(query)]


def _bucket(seconds: float) -> int:
    return next((i for i, bound in enumerate(LATENCY_BOUNDS_S) if seconds <= bound),
                len(LATENCY_BOUNDS_S))  # fmt: skip


def test_a_window_is_one_row_per_endpoint_with_its_counts(sql_engine):
    """On SQLite and PostgreSQL: what each request added, in the window's row."""
    metadata.create_all(sql_engine)
    stats = ServiceStats(sql_engine, interval_s=60, worker="w1")
    latencies = [0.0004, 0.004, 0.004, 0.2, 12.0]
    for seconds, status in zip(latencies, [200, 200, 400, 500, 401], strict=True):
        stats.request("predict", status, seconds)
    stats.rejection("predict", "person_age")
    stats.request("feedback", 404, 0.01)
    stats.rejection("feedback", "_body")
    end = datetime.now(UTC) + timedelta(seconds=1)
    assert stats.flush(end) == 2
    feedback, predict = _rows(sql_engine)
    assert predict["endpoint"] == "predict" and predict["worker"] == "w1"
    assert (predict["requests"], predict["errors"], predict["rejected"],
            predict["unauthorized"]) == (5, 1, 1, 1)  # fmt: skip
    assert predict["rejections"] == {"person_age": 1}
    assert predict["latency_sum_s"] == pytest.approx(sum(latencies))
    histogram = predict["latency_histogram"]
    assert histogram["le"] == [*LATENCY_BOUNDS_S, None]  # None: slower than the last bound
    expected = [0] * (len(LATENCY_BOUNDS_S) + 1)
    for seconds in latencies:
        expected[_bucket(seconds)] += 1
    assert histogram["counts"] == expected
    assert (feedback["requests"], feedback["rejected"], feedback["rejections"]) == (
        1, 1, {"_body": 1},
    )  # fmt: skip
    window_end = predict["window_start"].replace(tzinfo=UTC) + timedelta(
        seconds=predict["window_s"]
    )
    assert window_end == end
    # Each window starts where the last one ended; an empty one writes nothing.
    assert stats.flush(end + timedelta(seconds=5)) == 0
    stats.request("predict", 200, 0.001)
    stats.flush(end + timedelta(seconds=15))
    last = _rows(sql_engine)[-1]
    assert last["window_start"].replace(tzinfo=UTC) == end + timedelta(seconds=5)
    assert (last["window_s"], last["requests"]) == (10, 1)


def test_rows_the_database_refuses_are_written_with_the_next_window(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")  # no tables yet
    stats = ServiceStats(engine, interval_s=60, worker="w1")
    stats.request("predict", 200, 0.001)
    assert stats.flush() == 0  # refused: kept
    metadata.create_all(engine)
    stats.request("predict", 200, 0.002)
    stats.request("predict", 200, 0.003)
    assert stats.flush() == 2
    assert [row["requests"] for row in _rows(engine)] == [1, 2]


def test_the_thread_writes_every_interval_and_close_writes_the_rest(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    metadata.create_all(engine)
    stats = ServiceStats(engine, interval_s=0.2)
    stats.start()
    try:
        stats.request("predict", 200, 0.001)
        deadline = time.monotonic() + 10
        while not _rows(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [row["requests"] for row in _rows(engine)] == [1]  # before close
        stats.request("predict", 200, 0.001)
        stats.request("predict", 503, 0.001)
    finally:
        stats.close()
    rows = _rows(engine)
    assert sum(row["requests"] for row in rows) == 3 and sum(row["errors"] for row in rows) == 1
    assert rows[0]["worker"].endswith(":" + str(__import__("os").getpid()))


def _call(app, path: str):
    scope = {"type": "http", "method": "POST", "path": path, "headers": []}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    asyncio.run(app(scope, receive, send))


def _answering(status: int | None):
    async def app(scope, receive, send):
        if status is None:
            raise RuntimeError("the app failed before it answered")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def test_the_middleware_counts_each_request_under_its_endpoint(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    metadata.create_all(engine)
    stats = ServiceStats(engine, interval_s=60, worker="w1")
    for status, path in [(200, "/predict"), (422, "/feedback"), (401, "/feedback"),
                         (404, "/wp-login.php"), (200, "/metrics")]:  # fmt: skip
        _call(RequestStats(_answering(status), stats=stats, routes=ROUTES), path)
    with pytest.raises(RuntimeError):  # a failure without an answer: a 5xx
        _call(RequestStats(_answering(None), stats=stats, routes=ROUTES), "/predict")
    stats.flush()
    counts = {row["endpoint"]: (row["requests"], row["errors"], row["rejected"],
                                row["unauthorized"]) for row in _rows(engine)}  # fmt: skip
    assert counts == {"predict": (2, 1, 0, 0), "feedback": (2, 0, 1, 1), "_other": (1, 0, 1, 0),
                      "metrics": (1, 0, 0, 0)}  # fmt: skip


def test_windows_and_workers_merge_by_adding_counts(tmp_path):
    """A quantile over any set of rows is the merged histogram's: the bounds never change."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'stats.db'}")
    metadata.create_all(engine)
    one, two = (ServiceStats(engine, interval_s=60, worker=w) for w in ("w1", "w2"))
    for stats, seconds in ((one, 0.004), (two, 0.004), (two, 0.3)):
        stats.request("predict", 200, seconds)
    one.flush()
    two.flush()
    rows = _rows(engine)
    assert len({tuple(row["latency_histogram"]["le"][:-1]) for row in rows}) == 1
    merged = [sum(counts) for counts in zip(*(r["latency_histogram"]["counts"] for r in rows),
                                            strict=True)]  # fmt: skip
    assert sum(merged) == 3 and merged[_bucket(0.004)] == 2 and merged[_bucket(0.3)] == 1
