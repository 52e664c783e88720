"""The prediction log: every answer written to SQL off the request's critical path.

Requests put rows in a bounded in-memory queue and return; a background thread writes them in
batches. On shutdown the queue is drained. If the database falls behind and the queue is full,
the row is counted as dropped (exposed in /metrics), never lost silently.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import queue
import secrets
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from creditflow.db import predictions

log = logging.getLogger(__name__)


def entity_hasher(key_file: Path):
    """HMAC-SHA256 of the entity keys with a secret kept in the home (created on first use)."""
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    key = bytes.fromhex(key_file.read_text().strip())

    def entity_hash(dob_ssn: str, zipcode: int) -> str:
        return hmac.new(key, f"{dob_ssn}|{zipcode}".encode(), hashlib.sha256).hexdigest()

    return entity_hash


class PredictionLog:
    def __init__(self, engine: sa.Engine, capacity: int = 50_000, batch_size: int = 500,
                 interval_s: float = 0.2, on_drop=None) -> None:  # fmt: skip
        self.engine = engine
        self.queue: queue.Queue[dict] = queue.Queue(maxsize=capacity)
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.dropped = 0
        self.written = 0
        self._on_drop = on_drop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, row: dict) -> None:
        """Queue one prediction; never blocks the request. After ``close`` (a request answered
        during shutdown) the row is written at once instead."""
        if self._stop.is_set():
            self._write([row])
            return
        try:
            self.queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()

    def _take(self) -> list[dict]:
        """Waits for a row, then lets the batch fill for ``interval_s`` (unless it is full
        already) and takes what is there. The writer wakes once a batch, not once a row: a
        wake-up per row made it compete for the GIL with every request in flight."""
        try:
            rows = [self.queue.get(timeout=self.interval_s)]
        except queue.Empty:
            return []
        if self.queue.qsize() < self.batch_size - 1:
            self._stop.wait(self.interval_s)  # returns at once on shutdown
        while len(rows) < self.batch_size:
            try:
                rows.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return rows

    def _write(self, rows: list[dict]) -> None:
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    conn.execute(predictions.insert(), rows)
                self.written += len(rows)
                return
            except Exception:  # the database may be briefly unavailable: retry, then report
                log.exception("prediction log write failed (attempt %d)", attempt + 1)
                time.sleep(0.2 * 2**attempt)
        self.dropped += len(rows)
        if self._on_drop is not None:
            for _ in rows:
                self._on_drop()

    def _run(self) -> None:
        while not self._stop.is_set() or not self.queue.empty():
            rows = self._take()
            if rows:
                self._write(rows)

    def close(self, timeout_s: float = 30) -> None:
        """Drain the queue and stop the writer (graceful shutdown)."""
        self._stop.set()
        self._thread.join(timeout_s)
