"""Concurrent /predict requests are scored together, each gets its own answer."""

import asyncio

import pytest

from creditflow.bento.microbatch import MicroBatcher


def test_concurrent_requests_share_a_batch_and_get_their_own_answers():
    calls: list[list[int]] = []

    def work(items: list[int]) -> list[int]:
        calls.append(items)
        return [item * 10 for item in items]

    async def scenario():
        batcher = MicroBatcher(work, max_size=4)
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(6)))
        alone = await batcher.submit(7)
        return answers, alone

    answers, alone = asyncio.run(scenario())
    assert answers == [0, 10, 20, 30, 40, 50]
    assert alone == 70
    assert calls == [[0, 1, 2, 3], [4, 5], [7]]  # at most max_size, the rest next turn


def test_a_failing_batch_fails_each_of_its_requests():
    def work(items):
        raise ValueError("store down")

    async def scenario():
        batcher = MicroBatcher(work, max_size=8)
        return await asyncio.gather(*(batcher.submit(i) for i in range(3)),
                                    return_exceptions=True)  # fmt: skip

    results = asyncio.run(scenario())
    assert all(isinstance(r, ValueError) for r in results)
    with pytest.raises(ValueError):
        asyncio.run(MicroBatcher(work, max_size=8).submit(1))
