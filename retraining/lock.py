"""One retraining at a time: a lock the operating system releases when its holder dies.

PostgreSQL: a session advisory lock, held by a connection of its own (the server drops it when
the connection closes, so also when the process is killed). SQLite: an exclusive ``flock`` on
a file of the home (the kernel drops it with the process). Neither leaves anything to clean up
after a crash, so a killed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

# The advisory lock's key: a fixed number derived from the job's name (64-bit signed space).
ADVISORY_KEY = zlib.crc32(b"creditflow retrain")
LOCK_FILE = "retrain.lock"


@contextmanager
def retrain_lock(engine: sa.Engine, lock_dir: Path) -> Iterator[bool]:
    """Yields True while this process holds the retraining lock, False (at once, no waiting)
    if another run holds it. ``lock_dir``: where SQLite's lock file lives (the home)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            query = sa.text("select pg_try_advisory_lock(:k)")
            held = bool(conn.scalar(query, {"k": ADVISORY_KEY}))
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                    conn.commit()
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a curious operator
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
