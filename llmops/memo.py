"""A process-local memo of the configuration every request reads: policy chains, prices,
budgets. Without it a realtime request queried them a dozen times (each query costs more to
build in the ORM than to run).

They change rarely and only through saves (the admin, the API, sync_prices), so the memo is
dropped on every save or delete of a configuration model (see `watch`) and, for the other
processes, through a version token in the shared cache (a file on one machine, Redis when
scaled out) that the same saves replace once their transaction commits. Each read checks the
token: one cache read where there were queries. Rows written with a queryset .update() send no
signal; code that changes configuration that way must call `invalidate()` itself.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save

VERSION_KEY = "llmops:config-version"
_MISSING = object()

_lock = threading.Lock()
_pinned = threading.local()
# (token the values were read under, the values). Replaced, never cleared in place: a value
# built from rows read before a change must not land in the generation after it.
_generation: tuple[Any, dict] = (_MISSING, {})


def memoized(
    key: Hashable, build: Callable[[], Any], *, keep: Callable[[Any], bool] | None = None
) -> Any:
    """The value memoized under `key`, built (from the database) if this generation lacks it;
    with `keep`, built values it refuses are returned but not kept (built again next time).
    Values are shared by every thread: treat them as read-only."""
    global _generation
    token = getattr(_pinned, "token", _MISSING)
    if token is _MISSING:
        token = cache.get(VERSION_KEY)
    with _lock:
        if _generation[0] != token:
            _generation = (token, {})
        values = _generation[1]
    value = values.get(key, _MISSING)
    if value is _MISSING:
        value = build()
        # Not while this thread's own transaction changed the configuration: it reads rows
        # other threads cannot see yet, and that may yet roll back.
        if (keep is None or keep(value)) and not any(
            fn is _publish for _, fn, _ in connection.run_on_commit
        ):
            values[key] = value
    return value


@contextmanager
def pinned() -> Iterator[None]:
    """Within it, memoized() reads the version token once, not on every lookup: a unit of work
    looks up a chain, prices and budgets several times (a cache read each, a round trip on
    Redis). Changes committed meanwhile are seen by the next unit."""
    _pinned.token = cache.get(VERSION_KEY)
    try:
        yield
    finally:
        del _pinned.token


def invalidate() -> None:
    """Drop this process's memo now, and every process's once the transaction commits."""
    global _generation
    with _lock:
        _generation = (_MISSING, {})
    transaction.on_commit(_publish)


def _publish() -> None:
    global _generation
    cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    with _lock:
        _generation = (_MISSING, {})


def watch(*models) -> None:
    """Invalidate on every save and delete of `models`."""

    def changed(sender, **kwargs) -> None:
        invalidate()

    for model in models:
        # weak=False: the receiver is a closure, nothing else holds it.
        uid = f"llmops.memo:{model._meta.label}"
        post_save.connect(changed, sender=model, weak=False, dispatch_uid=uid)
        post_delete.connect(changed, sender=model, weak=False, dispatch_uid=uid)


def reset() -> None:
    """Forget everything in this process (tests: rows of a rolled-back test)."""
    global _generation
    with _lock:
        _generation = (_MISSING, {})
