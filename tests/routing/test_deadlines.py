"""A streamed call's deadlines (routing.providers.calls.with_deadlines): the first byte, a
stall between events, the whole call; someone else's cancellation stays a cancellation; and
one timer serves all of a stream's reads, not one per event."""

from __future__ import annotations

import asyncio

import pytest

from routing.providers.calls import with_deadlines
from routing.providers.errors import ProviderError


async def paced(gaps: list[float]):
    """Events 0, 1, ... each after its gap in seconds."""
    for i, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield i


async def collect(events, **deadlines) -> list:
    return [e async for e in with_deadlines(events, label="sim", **deadlines)]


def run(coro):
    return asyncio.run(coro)


def test_events_within_their_deadlines_all_arrive():
    assert run(collect(paced([0.01] * 5), first_byte=0.5, total=5)) == [0, 1, 2, 3, 4]


def test_a_slow_first_event_is_an_unbilled_first_byte_timeout():
    with pytest.raises(ProviderError) as caught:
        run(collect(paced([0.5, 0]), first_byte=0.1, total=5))

    error = caught.value
    assert (error.kind, error.retryable, error.maybe_billed, error.after_first_byte) == (
        "timeout_first_byte",
        True,
        False,
        False,
    )


def test_a_gap_after_the_first_event_is_a_stall_that_may_be_billed():
    received = []

    async def main():
        async for event in with_deadlines(
            paced([0, 0.01, 0.5]), first_byte=0.1, total=5, label="sim"
        ):
            received.append(event)

    with pytest.raises(ProviderError) as caught:
        run(main())

    assert received == [0, 1]
    assert (caught.value.kind, caught.value.maybe_billed, caught.value.after_first_byte) == (
        "stream_stalled",
        True,
        True,
    )


def test_the_whole_call_past_its_total_is_a_total_timeout():
    # No gap is a stall (0.05 s against 0.2 s), but together they pass the total.
    with pytest.raises(ProviderError) as caught:
        run(collect(paced([0.05] * 20), first_byte=0.2, total=0.3))

    assert caught.value.kind == "timeout_total"


def test_time_the_consumer_spends_between_events_is_not_a_stall():
    async def main():
        got = []
        async for event in with_deadlines(paced([0, 0, 0]), first_byte=0.05, total=5, label="s"):
            got.append(event)
            await asyncio.sleep(0.15)  # the client reads slowly: not the provider's stall
        return got

    assert run(main()) == [0, 1, 2]


def test_someone_elses_cancellation_stays_a_cancellation():
    async def main():
        task = asyncio.create_task(collect(paced([10]), first_byte=5, total=50))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert run(main()) is True


def test_a_timeout_leaves_the_task_able_to_go_on():
    async def main():
        with pytest.raises(ProviderError):
            await collect(paced([0.3]), first_byte=0.05, total=5)
        # The watchdog's cancellation was taken back: the task awaits on as before.
        task = asyncio.current_task()
        await asyncio.sleep(0.01)
        return task.cancelling()

    assert run(main()) == 0


def test_one_timer_serves_every_read_of_a_stream(monkeypatch):
    """A relayed stream reads once per token: a timer made per read was a tenth of daphne's
    CPU per frame. 200 events arriving 1 ms apart arm the stream's timer a handful of times."""
    armed = []

    async def main():
        loop = asyncio.get_running_loop()
        call_at = loop.call_at

        def counting(when, callback, *args, **kwargs):
            if getattr(callback, "__qualname__", "").startswith("MovingDeadline"):
                armed.append(when)
            return call_at(when, callback, *args, **kwargs)

        # asyncio.timeout's reschedule calls call_at too: counted through the loop either way.
        monkeypatch.setattr(loop, "call_at", counting)
        timeouts = []
        real_timeout = asyncio.timeout

        def counting_timeout(delay):
            timeouts.append(delay)
            return real_timeout(delay)

        monkeypatch.setattr(asyncio, "timeout", counting_timeout)
        got = await collect(paced([0.001] * 200), first_byte=0.1, total=30)
        return got, timeouts

    got, timeouts = run(main())
    assert len(got) == 200
    assert timeouts == []
    assert 1 <= len(armed) <= 5, armed


def test_no_timer_outlives_the_stream():
    async def main():
        loop = asyncio.get_running_loop()
        await collect(paced([0, 0]), first_byte=60, total=600)
        return [h for h in loop._scheduled if not h.cancelled()]

    assert run(main()) == []


class Swallowing:
    """A source whose first read swallows a cancellation and answers late anyway."""

    def __init__(self) -> None:
        self.reads = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        self.reads += 1
        if self.reads == 1:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                return "late"
        if self.reads > 2:
            raise StopAsyncIteration
        return "next"


def test_a_timeout_the_source_swallowed_is_taken_back_and_the_stream_goes_on():
    """As asyncio.timeout does: the timer's cancellation is withdrawn when the read ends,
    whatever the read did with it, so the task is not left cancelling."""

    async def main():
        got = await collect(Swallowing(), first_byte=0.05, total=5)
        return got, asyncio.current_task().cancelling()

    assert run(main()) == (["late", "next"], 0)
