"""Scoring concurrent /predict requests together, on the event loop.

The endpoints are coroutines that score inline. A request joins a queue; the first one in
schedules a flush a few turns of the loop later, and requests parsed meanwhile (under load:
those that arrived while the previous batch was scored) join it. One feature lookup and one
model call then serve the whole batch: the fixed costs of a call (an online-store query per
feature view, XGBoost's per-call overhead) are paid once per batch instead of once per
request. A lone request is scored a few turns of the loop later: it waits for no timer.

BentoML's own adaptive batching (``batchable=True``) would change /predict's contract: it takes
and returns lists. This keeps one application in, one answer out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Runs ``work`` on the items submitted while the loop was busy, at most ``max_size``."""

    def __init__(
        self, work: Callable[[list[T]], Sequence[R]], max_size: int, turns: int = 3
    ) -> None:
        self.work = work
        self.max_size = max_size
        # Each turn of the loop lets every request in flight advance one step through the
        # framework towards the queue. At 8 clients 3 turns gathered about all 8 requests in a
        # batch where 1 turn gathered 3 (docs/benchmarks.md); a lone request waits 3 turns
        # (microseconds).
        self.turns = turns
        self.pending: list[tuple[T, asyncio.Future[R]]] = []
        self.batches = 0  # counters, for the batch-size metric
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self.pending.append((item, future))
        if len(self.pending) == 1:
            self._after_turns(loop, self.turns)
        return await future

    def _after_turns(self, loop: asyncio.AbstractEventLoop, turns: int) -> None:
        if turns:
            loop.call_soon(self._after_turns, loop, turns - 1)
        else:
            self._flush()

    def _flush(self) -> None:
        batch, self.pending = self.pending[: self.max_size], self.pending[self.max_size :]
        if self.pending:  # more than one batch waiting: the rest go next turn
            asyncio.get_running_loop().call_soon(self._flush)
        self.batches += 1
        self.items += len(batch)
        try:
            results = self.work([item for item, _ in batch])
        except Exception as err:  # every request of the batch gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a client that went away cancelled its future
                future.set_result(result)
