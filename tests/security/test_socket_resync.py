"""Issue 19 item 4, counted query by query (in-process, channels' WebsocketCommunicator against
llmops.asgi.application): however many idle sockets follow `all`, a resync tick reads the
database once; a change the channel layer did not carry reaches each subscriber once, read
through that subscriber's own visibility."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.db.backends.signals import connection_created
from django.utils import timezone

from llmops.asgi import application
from routing.keys import api_key_create
from routing.models import Request
from tests.security.test_websockets import HOST, queued_request

# Committed rows: the consumers read them from their own database connections.
pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBERS = 40
TICKS = 3


def request_reads(queries: list[str]) -> int:
    """SELECTs of requests by change time: the resync's read (the consumers' other reads of
    requests are by id)."""
    return sum(
        1 for q in queries if q.startswith("SELECT") and '"routing_request"."updated_at" >=' in q
    )


@pytest.fixture
def sql() -> list[str]:
    """Every statement any database connection opened during the test runs (the consumers
    run their database work in threads of their own)."""
    seen: list[str] = []

    def count(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    def install(sender, connection, **kwargs):
        connection.execute_wrappers.append(count)

    connection_created.connect(install)
    connection.execute_wrappers.append(count)  # this thread's, made before the test
    yield seen
    connection.execute_wrappers.remove(count)
    connection_created.disconnect(install)


def test_idle_subscribers_share_one_read_per_tick_and_a_change_reaches_each_once(
    team, settings, sql, figures
):
    settings.LLMOPS_WS_RESYNC_SECONDS = 1
    settings.LLMOPS_WS_MAX_SOCKETS_PER_CALLER = SUBSCRIBERS
    _, raw = api_key_create(team=team, name="resync")
    request = queued_request(team, "resync-workload")

    async def scenario() -> tuple[int, int, list[int]]:
        sockets = [
            WebsocketCommunicator(
                application,
                "/ws/requests/",
                headers=[HOST, (b"authorization", f"Bearer {raw}".encode())],
            )
            for _ in range(SUBSCRIBERS)
        ]
        for socket in sockets:
            assert (await socket.connect())[0]
            await socket.send_json_to({"type": "subscribe", "all": True})
            assert (await socket.receive_json_from(timeout=5))["type"] == "subscribed"
            # The queued request is told once at subscription (changed in the last seconds).
        start = len(sql)
        await asyncio.sleep(TICKS * 1 + 0.5)
        idle = sql[start:]
        for socket in sockets:  # drain the catch-up push of the request made before
            while not await socket.receive_nothing(timeout=0.01):
                await socket.receive_json_from()
        # A change no group message announces (as from another process on the in-memory
        # layer): only the resync can find it.
        await asyncio.to_thread(
            lambda: Request.objects.filter(pk=request.pk).update(
                status=Request.Status.CANCELLED, updated_at=timezone.now()
            )
        )
        start = len(sql)
        await asyncio.sleep(2 * 1 + 0.5)
        changed = sql[start:]
        told = []
        for socket in sockets:
            messages = []
            while not await socket.receive_nothing(timeout=0.05):
                messages.append(await socket.receive_json_from())
            told.append(sum(1 for m in messages if m.get("status") == "cancelled"))
            await socket.disconnect()
        return request_reads(idle), len(changed), told

    idle_reads, queries_after_change, told = async_to_sync(scenario)()
    figures.record(
        "T8",
        f"websocket resync, {SUBSCRIBERS} idle `all` subscribers (in-process)",
        request_reads_per_tick=round(idle_reads / TICKS, 2),
        queries_in_the_two_ticks_after_one_change=queries_after_change,
        subscribers_told_of_the_change_once=told.count(1),
    )

    assert 1 <= idle_reads <= TICKS + 1  # one per tick, not one per subscriber
    assert told == [1] * SUBSCRIBERS
    # One read per tick, then one read per subscriber of the one changed row.
    assert queries_after_change <= 2 * 2 + SUBSCRIBERS * 3
