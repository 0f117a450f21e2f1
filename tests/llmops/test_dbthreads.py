"""llmops.dbthreads: a unit's calls handed to its event loop (on_loop) are made there, after
the unit, in order, and still made when the awaiting request was cancelled meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from llmops import dbthreads


@pytest.fixture
def pool(settings):
    settings.LLMOPS_DB_THREADS = 2  # the pool, as daphne runs it (the suite runs units inline)


def test_calls_handed_to_the_loop_are_made_there_after_the_unit_in_order(pool):
    made: list[tuple[int, bool, int]] = []
    done = threading.Event()

    def unit() -> str:
        assert dbthreads.event_loop() is not None  # a database thread serving a loop
        for n in range(3):
            dbthreads.on_loop(lambda n=n: made.append((n, done.is_set(), threading.get_ident())))
        time.sleep(0.05)  # the calls wait for the unit, however long it runs on
        done.set()
        return "result"

    async def main() -> tuple[str, int]:
        result = await dbthreads.db(unit)
        await asyncio.sleep(0)  # the calls were scheduled with the result
        return result, threading.get_ident()

    result, loop_thread = asyncio.run(main())
    assert result == "result"
    assert made == [(0, True, loop_thread), (1, True, loop_thread), (2, True, loop_thread)]


def test_a_call_handed_over_after_its_awaiter_was_cancelled_still_reaches_the_loop(pool):
    reached = threading.Event()
    on_thread: list[int] = []

    def unit() -> None:
        started.set()
        time.sleep(0.2)  # cancelled meanwhile; the unit runs on, as a thread does
        dbthreads.on_loop(lambda: (on_thread.append(threading.get_ident()), reached.set()))

    async def main() -> int:
        task = asyncio.ensure_future(dbthreads.db(unit))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if reached.is_set():
                break
            await asyncio.sleep(0.01)
        return threading.get_ident()

    started = threading.Event()
    loop_thread = asyncio.run(main())
    assert reached.is_set()
    assert on_thread == [loop_thread]  # made on the loop, not in the database thread
