"""/ws/requests/ catching up by `Request.updated_at`: one read per process per tick.

Group messages (routing.events) carry most status changes to subscribers; what they miss (a
change in another process on the in-memory channel layer, a dropped message) is read back
from the database every LLMOPS_WS_RESYNC_SECONDS. Each subscriber used to run that read for
itself, so 300 idle subscribers made 150 queries a second and slowed every tenant. Here one
poller per event loop, started with the first subscriber and ended after the last, reads the
requests changed since its last read once per tick (by the teams followed, through the
`(team, updated_at)` index) and hands each changed row only to the subscribers that follow it
and have not been told of that change yet. A subscriber then reads those rows through its own
visibility (routing.consumers), so the database work is O(changed requests), not
O(subscribers x requests).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from llmops.dbthreads import db
from routing.models import Request

log = logging.getLogger(__name__)

# A read starts this far before the last one, so a change committed by another process while
# the last read ran is not skipped; the repeats are dropped as already sent.
RESYNC_OVERLAP = timedelta(seconds=5)
# Rows per read: a burst of changes past it is read over the next ticks, oldest first.
READ_LIMIT = 2_000


@dataclass(frozen=True)
class Change:
    id: uuid.UUID
    team_id: int
    status: str
    updated_at: datetime

    @property
    def mark(self) -> tuple:
        return (self.status, self.updated_at)


class Subscriber(Protocol):
    def teams_followed(self) -> set[int]: ...

    def wants(self, change: Change) -> bool: ...

    async def push(self, ids: list[uuid.UUID]) -> None: ...


class Poller:
    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self.task: asyncio.Task | None = None
        self.since = timezone.now()
        self.reads = 0  # ticks that read the database, for tests and logs

    def add(self, subscriber: Subscriber) -> None:
        # A new subscriber hears of changes from RESYNC_OVERLAP back, as a fresh read would.
        self.since = min(self.since, timezone.now() - RESYNC_OVERLAP)
        self.subscribers.add(subscriber)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run())

    def discard(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def run(self) -> None:
        while self.subscribers:
            await asyncio.sleep(settings.LLMOPS_WS_RESYNC_SECONDS)
            try:
                await self.tick()
            except Exception:
                # The next tick reads from the same `since`: nothing is skipped.
                log.exception("websocket resync failed")
        self.task = None

    async def tick(self) -> None:
        subscribers = list(self.subscribers)
        teams = set().union(*(s.teams_followed() for s in subscribers)) if subscribers else set()
        if not teams:
            return
        read_at = timezone.now()
        changes = await db(changed_since, teams=teams, since=self.since)
        self.reads += 1
        if len(changes) == READ_LIMIT:
            self.since = changes[-1].updated_at
        else:
            self.since = read_at - RESYNC_OVERLAP
        for subscriber in subscribers:
            ids = [c.id for c in changes if subscriber.wants(c)]
            if ids:
                try:
                    await subscriber.push(ids)
                except Exception:
                    log.exception("websocket resync push failed")


def changed_since(*, teams: set[int], since: datetime) -> list[Change]:
    rows = (
        Request.objects.filter(team_id__in=teams, updated_at__gte=since)
        .order_by("updated_at")
        .values_list("pk", "team_id", "status", "updated_at")[:READ_LIMIT]
    )
    return [Change(*row) for row in rows]


_pollers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> Poller


def poller() -> Poller:
    loop = asyncio.get_running_loop()
    found = _pollers.get(loop)
    if found is None:
        found = _pollers[loop] = Poller()
    return found
