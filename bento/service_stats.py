"""What the service saw, per time window, worker and endpoint, kept in our database.

Prometheus keeps no history, and a request turned away never reaches the prediction log; so
each worker also counts, per endpoint: requests, 5xx errors, 4xx rejections (and the fields or
rules they named, from bento/middleware.py), 401s, and the whole request's latency (at the
ASGI layer: a sum and a histogram with fixed bounds, :data:`LATENCY_BOUNDS_S`, so windows and
workers merge by adding counts). A request only adds to counters in memory under a lock held
for a few dictionary operations; a background thread writes one ``service_stats`` row per
endpoint seen at the end of each window (windows of ``interval_s``, aligned to multiples of it
in UTC, the first and the last one partial), and :meth:`ServiceStats.close` writes the last
window at shutdown. A row the database refuses is kept and written with the next window's
(up to :data:`MAX_PENDING_ROWS`, then counted in ``creditflow_service_stats_dropped_total``).

``CREDITFLOW_SERVICE_STATS=0`` turns all of it off (bento/service.py reads it).
"""

from __future__ import annotations

import bisect
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter

from creditflow import clock
from creditflow.bento.middleware import endpoint_label
from creditflow.tables import service_stats

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Upper bounds (seconds) of the latency buckets; a last bucket, ``None`` in the stored
# ``le``, holds what is slower than the last bound. Fixed: rows of any window and worker merge.
LATENCY_BOUNDS_S = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
                    0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip
# Rows kept for another try while the database refuses them (about an hour of 10 s windows of
# a few endpoints); older ones are dropped first, and counted.
MAX_PENDING_ROWS = 2000

DROPPED = Counter(
    name="creditflow_service_stats_dropped",
    documentation="service_stats rows the database refused for longer than the service keeps them",
)


def worker_name() -> str:
    """This process, as the ``worker`` column names it: host and process id."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}"


class _Endpoint:
    """One endpoint's counts in the current window."""

    __slots__ = ("buckets", "errors", "latency_sum_s", "rejected", "rejections", "requests",
                 "unauthorized")  # fmt: skip

    def __init__(self) -> None:
        self.requests = self.errors = self.rejected = self.unauthorized = 0
        self.latency_sum_s = 0.0
        self.buckets = [0] * (len(LATENCY_BOUNDS_S) + 1)
        self.rejections: dict[str, int] = {}


class ServiceStats:
    """The counters of one worker, and the thread that writes them (see the module)."""

    def __init__(self, engine: sa.Engine, interval_s: float, worker: str | None = None) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self.worker = worker  # None: this process (worker_name), asked when it starts
        self._lock = threading.Lock()
        self._window: dict[str, _Endpoint] = {}
        self._window_start = clock.now()
        self._pending: list[dict] = []  # rows the database refused, oldest first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the request path: counters in memory ---

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """One answered request (``status`` 500 for one that failed without an answer)."""
        bucket = bisect.bisect_left(LATENCY_BOUNDS_S, seconds)
        with self._lock:
            counts = self._window.get(endpoint)
            if counts is None:
                counts = self._window[endpoint] = _Endpoint()
            counts.requests += 1
            counts.latency_sum_s += seconds
            counts.buckets[bucket] += 1
            if status >= 500:
                counts.errors += 1
            elif status == 401:
                counts.unauthorized += 1
            elif status >= 400:
                counts.rejected += 1

    def rejection(self, endpoint: str, field: str) -> None:
        """A 4xx named ``field`` (a contract field or rule; ``_body``: none): the middleware's
        ``rejected(endpoint, field)`` callback. The request itself is counted by :meth:`request`."""
        with self._lock:
            counts = self._window.get(endpoint)
            if counts is None:
                counts = self._window[endpoint] = _Endpoint()
            counts.rejections[field] = counts.rejections.get(field, 0) + 1

    # --- off the request path: rows ---

    def _take_window(self, end: datetime) -> list[dict]:
        """The current window's rows (one per endpoint seen), a new window begun at ``end``."""
        with self._lock:
            window, self._window = self._window, {}
            start, self._window_start = self._window_start, end
        seconds = max((end - start).total_seconds(), 0.0)
        le = [*LATENCY_BOUNDS_S, None]
        return [{
            "window_start": start, "window_s": seconds, "worker": self.worker or worker_name(),
            "endpoint": endpoint, "requests": c.requests, "errors": c.errors,
            "rejected": c.rejected, "unauthorized": c.unauthorized,
            "latency_sum_s": c.latency_sum_s,
            "latency_histogram": {"le": le, "counts": list(c.buckets)},
            "rejections": dict(sorted(c.rejections.items())),
        } for endpoint, c in sorted(window.items())]  # fmt: skip

    def flush(self, end: datetime | None = None) -> int:
        """Ends the current window at ``end`` (default: now) and writes its rows, with any
        the database refused before; returns the rows written."""
        rows = self._pending + self._take_window(end or clock.now())
        if not rows:
            return 0
        try:
            with self.engine.begin() as conn:
                conn.execute(service_stats.insert(), rows)
        except Exception:  # the database may be down: keep the rows for the next window
            log.exception("service statistics not written (%d rows kept for later)", len(rows))
            dropped = max(len(rows) - MAX_PENDING_ROWS, 0)
            if dropped:
                DROPPED.inc(dropped)
            self._pending = rows[dropped:]
            return 0
        self._pending = []
        return len(rows)

    def start(self) -> None:
        """Writes a window every ``interval_s``, at its multiples in UTC (in a thread)."""
        self.worker = self.worker or worker_name()
        self._thread = threading.Thread(target=self._run, name="service-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s - time.time() % self.interval_s):
            now = clock.now()
            # The window's end, on the multiple just passed (the wait may overshoot a little).
            epoch = now.timestamp()
            end = now - timedelta(seconds=epoch % self.interval_s)
            if end <= self._window_start:
                end = now
            self.flush(end)

    def close(self, timeout_s: float = 30) -> None:
        """Stops the thread and writes the last window (graceful shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.flush()


class RequestStats:
    """ASGI middleware: each HTTP request's status and latency, counted by ``stats`` under
    its endpoint (:func:`bento.middleware.endpoint_label` of ``routes``). Outermost of ours, so
    that 401s and the 4xx answered before the app are counted too."""

    def __init__(self, app: ASGIApp, *, stats: ServiceStats, routes: Iterable[str]) -> None:
        self.app = app
        self.stats = stats
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]  # if the app fails before it answers

        async def status_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, status_send)
        finally:
            endpoint = endpoint_label(scope["path"], self.routes)
            self.stats.request(endpoint, status[0], time.perf_counter() - started)
