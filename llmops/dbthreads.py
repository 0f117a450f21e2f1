"""Database work of the serving endpoints, run in a few long-lived threads.

Under ASGI, Django runs every sync_to_async call of a request in a thread made for that
request and closes that thread's database connection when the request ends. For the serving
endpoints (POST /v1/chat/completions, POST /api/v1/requests) that was a new thread, a new
connection (on SQLite its PRAGMAs, and a WAL checkpoint when the last one closes) and a new
executor per API call — a quarter of the CPU a request took. `db()` runs a unit of work in a
pool of LLMOPS_DB_THREADS threads instead, each keeping its connection between units.

A unit is a whole piece of work (it opens and closes its own transactions): two units of one
request may run in different threads. With LLMOPS_DB_THREADS=0 units run the Django way, in
the request's own thread; the in-process tests do that, because the test's transaction lives
in that thread and a pool thread could neither see its rows nor write beside it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections

from llmops import memo

# A connection idle this long is checked before use: a server may have closed it meanwhile.
IDLE_CHECK_SECONDS = 30

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=settings.LLMOPS_DB_THREADS, thread_name_prefix="llmops-db"
            )
        return _pool


def _ready() -> None:
    """What Django's request signals do for a request's thread, for a kept connection: drop it
    if an error may have broken it or it idled long enough for the server to close it."""
    now = time.monotonic()
    idle = now - getattr(_local, "last_used", now) > IDLE_CHECK_SECONDS
    _local.last_used = now
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or not (conn.errors_occurred or idle):
            continue
        if conn.is_usable():
            conn.errors_occurred = False
        else:
            conn.close()


def _unit(fn: Callable, loop: asyncio.AbstractEventLoop, outbox: _Outbox) -> Callable:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        _ready()
        _local.loop, _local.outbox = loop, outbox
        try:
            with memo.pinned():
                return fn(*args, **kwargs)
        except DatabaseError:
            # The connection may be what failed; the next unit in this thread opens another.
            for conn in connections.all(initialized_only=True):
                conn.close()
            raise
        finally:
            _local.loop = _local.outbox = None

    return run


def event_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop that is awaiting this thread's unit, if this is a database thread: work
    a unit hands back to it (publishing an event) need not block the unit."""
    return getattr(_local, "loop", None)


class _Outbox:
    """Calls a unit hands to its event loop, made there once the unit is done."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[Callable, tuple]] = []
        self.emptied = False

    def empty(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: make the calls handed over so far; later ones go straight to it."""
        with self.lock:
            calls, self.calls, self.emptied = self.calls, [], True
        for fn, args in calls:
            loop.call_soon(fn, *args)


def on_loop(fn: Callable, /, *args: Any) -> None:
    """Call fn(*args) on the event loop awaiting this thread's unit (event_loop() is not None),
    once the unit has returned, in the order asked. Not loop.call_soon_threadsafe: that wakes
    the loop through its self-pipe, a socket write per call (4% of a request's CPU for its two
    status events), where the unit's own result wakes it anyway."""
    outbox: _Outbox = _local.outbox
    with outbox.lock:
        if not outbox.emptied:
            outbox.calls.append((fn, args))
            return
    # Its awaiter was cancelled while the unit ran on: the loop is woken for this call.
    _local.loop.call_soon_threadsafe(fn, *args)


async def db(fn: Callable, /, *args: Any, **kwargs: Any) -> Any:
    """Await `fn(*args, **kwargs)` (sync, using the ORM) run in a database thread."""
    if not settings.LLMOPS_DB_THREADS:
        return await sync_to_async(fn)(*args, **kwargs)
    loop = asyncio.get_running_loop()
    # The executor straight from the loop, with the caller's context: asgiref's SyncToAsync,
    # which adds thread-sensitivity and deadlock bookkeeping none of these units need, cost
    # more than the hop itself.
    context = contextvars.copy_context()
    outbox = _Outbox()
    call = functools.partial(context.run, _unit(fn, loop, outbox), *args, **kwargs)
    try:
        return await loop.run_in_executor(_executor(), call)
    finally:
        # Whether the unit returned or raised (an event of a transaction it committed before
        # failing still leaves), or this await was cancelled while it runs on.
        outbox.empty(loop)
