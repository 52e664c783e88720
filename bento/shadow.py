"""Shadow scoring off the request path: a thread scores what the champion answered.

The service answers with the champion, then hands the batch (applications, their request ids,
the shadow scorer of that moment) to this lane and returns. The thread scores and logs the
shadow's answers (role "shadow", the champion answer's request id); nothing of it reaches a
client. The lane is bounded: when the shadow falls behind, a batch is dropped and counted
(``creditflow_shadow_dropped_total``) rather than slowing the champion down.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

log = logging.getLogger(__name__)

DROPPED = Counter(
    name="creditflow_shadow_dropped",
    documentation="Applications the shadow model did not score (its lane full, or it failed)",
)

Work = Callable[[Any, list[dict], list[str], str], None]


class ShadowLane:
    """Runs ``work(scorer, applications, request_ids, endpoint)`` in one thread, in order."""

    def __init__(self, work: Work, capacity: int = 256) -> None:
        self.work = work
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="shadow-lane", daemon=True)
        self._thread.start()

    def submit(self, scorer: Any, applications: list[dict], request_ids: list[str],
               endpoint: str) -> None:  # fmt: skip
        """Never blocks: a full lane drops the batch (counted)."""
        try:
            self._queue.put_nowait((scorer, applications, request_ids, endpoint))
        except queue.Full:
            DROPPED.inc(len(applications))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self.work(*item)
            except Exception:  # a failing shadow never touches the champion's answers
                log.exception("shadow scoring failed: %d applications not scored", len(item[1]))
                DROPPED.inc(len(item[1]))
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def close(self, timeout_s: float = 30) -> None:
        """Scores what is queued, then stops."""
        self._queue.put(None)
        self._thread.join(timeout_s)
