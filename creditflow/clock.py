"""The one clock: what "now" is for scoring, logging, ingestion, materialization and every job.

Production reads the system clock. A job run ``--as-of T`` (a backfill, a scheduled run that
reports on a past window) and the lifecycle simulation set the clock instead, with
:func:`frozen`, so they drive the very same code: nothing below asks the system for the time.
The setting is per thread and per asyncio task (a ``ContextVar``): a frozen job in one thread
never moves the clock of a service answering in another.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_fixed: ContextVar[datetime | None] = ContextVar("creditflow_now", default=None)


def now() -> datetime:
    """The current time, timezone-aware UTC: the frozen time if one is set."""
    fixed = _fixed.get()
    return fixed if fixed is not None else datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A time without a zone is UTC; any other zone is converted."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@contextmanager
def frozen(at: datetime | None) -> Iterator[datetime]:
    """Within the block, :func:`now` is ``at`` (UTC); ``None`` leaves the system clock."""
    if at is None:
        yield now()
        return
    token = _fixed.set(as_utc(at))
    try:
        yield as_utc(at)
    finally:
        _fixed.reset(token)


def parse_duration(text: str) -> timedelta:
    """``7d``, ``24h`` or ``90m`` as a time span (``monitor --window``); ValueError naming it."""
    found = _DURATION.match(text or "")
    if not found or float(found[1]) <= 0:
        raise ValueError(
            f"{text!r}: expected a positive number of days, hours or minutes such as 7d, 24h or 90m"
        )
    unit = {"d": "days", "h": "hours", "m": "minutes"}[found[2]]
    return timedelta(**{unit: float(found[1])})
