"""The prediction log: every answer written to SQL off the request's critical path.

Requests add their rows to a buffer and return. A thread hands the buffer, pickled, to a
writer *process* every ``HANDOFF_S``, and the writer writes batches to the database. The
writer used to be a thread of the serving process: turning a batch into SQL parameters (JSON,
SQLAlchemy's processing) held the interpreter lock for milliseconds, which every request in
flight waited out (tail latency and throughput suffered); pickling the same batch is far
cheaper. (Handing each request's rows to a ``multiprocessing`` queue instead woke its feeder
thread once per request: slower at one client.) Figures: docs/benchmarks.md.

Nothing is lost silently. Rows in flight are held to ``capacity``: a row beyond it, rows a
writer did not live to write (a new one replaces it), and rows the database still refuses
after retries are counted as dropped (``creditflow_prediction_log_dropped`` in /metrics, from
both processes). ``close`` (graceful shutdown) hands over what is left and lets the writer
finish; a row recorded after that is written at once by the serving process.

A row may carry its application's raw entity keys under :data:`ENTITY_KEY_VALUES` instead of
their keyed hash and ciphertext: the writer turns them into both (:class:`KeySealer`) before
anything is written, so the serving process spends no time on them (Fernet: about 30 µs a row,
the HMAC 6 µs). The raw keys only ever travel through the pipe to the writer, a child process;
no table holds them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import Counter

from creditflow.config import Settings, get_settings
from creditflow.tables import predictions

if TYPE_CHECKING:
    from creditflow.applicant_keys import KeyCipher

log = logging.getLogger(__name__)

# How often buffered rows go to the writer. Small hand-offs hold the interpreter lock briefly:
# at 8 clients, handing over 0.5 s of rows at once raised p99 well above 50 ms hand-offs'
# (docs/benchmarks.md).
HANDOFF_S = 0.05

DROPPED = Counter(
    name="creditflow_prediction_log_dropped",
    documentation="Predictions the log could not keep (too many in flight, writer gone, "
    "or database down)",
)


# A row's raw entity key values (APPLICATIONS.key, in order), sealed by the writer.
ENTITY_KEY_VALUES = "_entity_key_values"


class KeySealer:
    """Replaces a row's :data:`ENTITY_KEY_VALUES` by ``entity_hash`` (the keyed hash) and
    ``entity_keys`` (their Fernet ciphertext). Picklable: it goes to the writer process, which
    reads the hash's secret from the home's key file itself. (creditflow.applicant_keys, which
    loads the data contract, is imported when first used: the writer must start fast, see
    ``_write_until_closed``.)"""

    def __init__(self, hash_key_file: Path, cipher: KeyCipher) -> None:
        self.hash_key_file = hash_key_file
        self.cipher = cipher
        self._hash: Callable[..., str] | None = None

    @classmethod
    def of_home(cls, settings: Settings) -> KeySealer:
        """The home's secrets (both created on first use, here: not by the writer)."""
        from creditflow.applicant_keys import key_cipher

        sealer = cls(settings.entity_hash_key_file, key_cipher(settings))
        sealer._hasher()
        return sealer

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_hash": None}

    def _hasher(self) -> Callable[..., str]:
        if self._hash is None:
            from creditflow.applicant_keys import entity_hasher

            self._hash = entity_hasher(self.hash_key_file)
        return self._hash

    def seal(self, rows: list[dict]) -> None:
        """In place; rows without raw keys (sealed already) are left as they are."""
        entity_hash, encrypt = self._hasher(), self.cipher.encrypt
        for row in rows:
            keys = row.pop(ENTITY_KEY_VALUES, None)
            if keys is not None:
                row["entity_hash"] = entity_hash(*keys)
                row["entity_keys"] = encrypt(keys)


class _Counts:
    """Row counts shared by the serving process and the writer. Each count is kept by one
    process at a time, so no lock between processes (no semaphore to clean up) is needed: the
    serving process counts the rows it queued and those it refused, the writer those written
    and those the database refused. When no writer is running, the serving process keeps all
    four."""

    def __init__(self, context) -> None:
        self.queued = context.RawValue("q", 0)
        self.refused = context.RawValue("q", 0)
        self.written = context.RawValue("q", 0)
        self.failed = context.RawValue("q", 0)
        self._lock = threading.Lock()  # between the threads of one process

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    @property
    def pending(self) -> int:
        """Queued, and neither written nor failed yet."""
        return self.queued.value - self.written.value - self.failed.value

    @property
    def dropped(self) -> int:
        return self.refused.value + self.failed.value

    def add(self, counter, n: int, dropped: bool = False) -> None:
        with self._lock:
            counter.value += n
        if dropped:
            DROPPED.inc(n)


class PredictionLog:
    def __init__(
        self,
        engine: sa.Engine,
        capacity: int = 50_000,
        batch_size: int = 500,
        interval_s: float | None = None,
        sealer: KeySealer | None = None,
    ) -> None:
        """``sealer``: turns rows' raw entity keys into hash and ciphertext (in the writer);
        without one, rows must carry ``entity_hash`` themselves."""
        # Default: the setting (CREDITFLOW_PREDICTION_LOG_INTERVAL_S), declared once.
        interval_s = get_settings().prediction_log_interval_s if interval_s is None else interval_s
        self.engine = engine
        self.capacity = capacity
        self.sealer = sealer
        self._context = multiprocessing.get_context("spawn")  # forking a threaded server: unsafe
        # The sealer pickled now, unpickled by the writer once it ignores stop signals.
        self._writer_args = (engine.url.render_as_string(hide_password=False), batch_size,
                             interval_s, sealer and pickle.dumps(sealer))  # fmt: skip
        self._counts = _Counts(self._context)
        self._buffer: list[dict] = []
        self._lock = threading.Lock()  # the buffer, and the counts this process keeps
        self._closing = threading.Event()
        self._closed = False
        self._start_writer()
        self._sending = threading.Thread(
            target=self._send_every_interval, name="prediction-log-send", daemon=True
        )
        self._sending.start()

    def _start_writer(self) -> None:
        receiver, self._sender = self._context.Pipe(duplex=False)
        url, batch_size, interval_s, sealer = self._writer_args
        self._writer = self._context.Process(
            target=_write_until_closed, name="prediction-log", daemon=True,
            args=(url, receiver, batch_size, interval_s, self._counts, sealer),
        )  # fmt: skip
        self._writer.start()
        receiver.close()  # the writer's end: once the writer is gone, sending fails

    def _replace_dead_writer(self, in_hand: int) -> None:
        """A writer that died (killed, say) took its unwritten rows with it: they are counted as
        dropped, and a new writer takes over. ``in_hand``: rows about to be sent again."""
        self._writer.join()
        with self._lock:
            lost = self._count_lost(still_here=in_hand + len(self._buffer))
        log.error("the prediction log writer died (exit code %s) with %d rows unwritten: "
                  "starting another", self._writer.exitcode, lost)  # fmt: skip
        self._sender.close()
        self._start_writer()

    def _count_lost(self, still_here: int) -> int:
        """Counts as dropped the rows handed to a writer that ended without writing them: all
        that is pending but the ``still_here`` rows this process has not handed over."""
        lost = max(self._counts.pending - still_here, 0)
        self._counts.add(self._counts.failed, lost, dropped=True)
        return lost

    @property
    def written(self) -> int:
        return self._counts.written.value

    @property
    def dropped(self) -> int:
        return self._counts.dropped

    def record(self, rows: list[dict]) -> None:
        """Buffer one request's predictions; never blocks the request. After ``close`` (a
        request answered during shutdown) they are written at once instead."""
        counts = self._counts
        with self._lock:
            closed = self._closed
            room = closed or counts.pending + len(rows) <= self.capacity
            counts.add(counts.queued if room else counts.refused, len(rows), dropped=not room)
            if room and not closed:
                self._buffer.extend(rows)
        if closed:
            _write(self.engine, rows, counts, self.sealer)

    def close(self, timeout_s: float = 30) -> None:
        """Send what is buffered, let the writer finish and stop (graceful shutdown)."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._sending.join(timeout_s)
        self._writer.join(timeout_s)
        if self._writer.is_alive():
            log.error("prediction log writer still busy after %.0f s: stopped", timeout_s)
            self._writer.kill()
            self._writer.join()
            self._sending.join()  # a hand-off it was blocked in fails now, and is counted
        with self._lock:
            self._closed = True
            left, self._buffer = self._buffer, []  # recorded while the last batch was sent
        self._sender.close()
        if lost := self._count_lost(still_here=len(left)):
            log.error("the prediction log writer ended (exit code %s) with %d rows unwritten",
                      self._writer.exitcode, lost)  # fmt: skip
        if left:
            _write(self.engine, left, self._counts, self.sealer)

    def _send_every_interval(self) -> None:
        while not self._closing.wait(HANDOFF_S):
            self._send()
        self._send()
        with contextlib.suppress(OSError):
            self._sender.send(None)  # closed

    def _send(self) -> None:
        with self._lock:
            rows, self._buffer = self._buffer, []
        if not rows:
            return
        for attempt in range(2):
            try:
                self._sender.send(rows)  # blocks while the pipe is full: the buffer fills
                return
            except OSError:  # the writer is gone
                if attempt or self._closing.is_set():
                    break
                self._replace_dead_writer(in_hand=len(rows))
        log.error("no prediction log writer: %d rows written by the serving process", len(rows))
        _write(self.engine, rows, self._counts, self.sealer)  # no writer owns the counts now


def _write(
    engine: sa.Engine, rows: list[dict], counts: _Counts, sealer: KeySealer | None = None
) -> None:
    if sealer is not None:
        try:
            sealer.seal(rows)
        except Exception:  # a key file gone, say: these rows cannot be written as they must
            log.exception("prediction log: entity keys not sealed, %d rows dropped", len(rows))
            counts.add(counts.failed, len(rows), dropped=True)
            return
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                conn.execute(predictions.insert(), rows)
            counts.add(counts.written, len(rows))
            return
        except Exception:  # the database may be briefly unavailable: retry, then report
            log.exception("prediction log write failed (attempt %d)", attempt + 1)
            time.sleep(0.2 * 2**attempt)
    counts.add(counts.failed, len(rows), dropped=True)


def _write_until_closed(
    url: str, receiver: Connection, batch_size: int, interval_s: float, counts: _Counts,
    sealer_pickle: bytes | None = None,
) -> None:  # fmt: skip
    """The writer process: writes a batch once it has ``batch_size`` rows or its oldest row
    waited ``interval_s``; stops on ``close`` or when the serving process is gone.

    It ignores SIGTERM and SIGINT: `bentoml serve` sends its stop signal to the worker's
    children too, and the writer must outlive the worker's shutdown hook, which drains it. (A
    stop in the fraction of a second before this line runs still kills it: then the rows it
    had not written are counted, and the serving process replaces it or writes the rest.)"""
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, signal.SIG_IGN)
    sealer: KeySealer | None = sealer_pickle and pickle.loads(sealer_pickle)
    engine = sa.create_engine(url)
    batch: list[dict] = []
    due = None  # when the oldest row of the batch must be written
    running = True
    while running:
        wait = None if due is None else max(0.0, due - time.monotonic())
        if receiver.poll(wait):
            try:
                rows = receiver.recv()
            except EOFError:  # the serving process is gone
                rows = None
            if rows is None:  # closed
                running = False
            else:
                batch.extend(rows)
                due = due or time.monotonic() + interval_s
                if len(batch) < batch_size:
                    continue
        for start in range(0, len(batch), batch_size):
            _write(engine, batch[start : start + batch_size], counts, sealer)
        batch, due = [], None
