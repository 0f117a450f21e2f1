"""Status changes of requests, told to websocket subscribers through the channel layer.

Whoever changes a request's status (the front door, the batch workers, the cancel API) calls
`request_changed` inside its transaction; the group message leaves after the commit, so a
subscriber never hears of a state it cannot read. Delivery is best effort: the channel layer
drops messages when it is down or full, and the in-memory layer of the embedded mode does not
reach other processes (a django-q2 worker). /ws/requests/ therefore also catches up by
`Request.updated_at`, which every status change bumps; see routing.consumers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from django.utils import timezone

from llmops.dbthreads import event_loop, on_loop
from routing.models import Request

log = logging.getLogger(__name__)

EVENT_TYPE = "request.changed"  # the consumers' handler is request_changed()


def request_group(request_id: uuid.UUID | str) -> str:
    # A request's own key is a UUID already (50,000 of them for a batch's results): not parsed
    # again from its text.
    key = request_id if type(request_id) is uuid.UUID else uuid.UUID(str(request_id))
    return f"llmops.request.{key.hex}"


def team_group(team_id: int) -> str:
    return f"llmops.team.{team_id}"


def request_touch(request: Request) -> None:
    """Stamp a status change on the row being saved (callers include updated_at in the save)."""
    request.updated_at = timezone.now()


def request_changed(request: Request) -> None:
    """Announce `request`'s new status to its subscribers once the transaction commits."""
    groups, message = _change(request)
    transaction.on_commit(lambda: _send(groups, message))


def requests_changed(requests: list[Request]) -> None:
    """request_changed for many requests (a batch's results): outside a serving thread the
    messages leave after the commit in one go, where one at a time each ran the channel layer
    in an event loop of its own (a thread and a loop per message: ~0.6 ms, half a minute for
    50,000 answers). The same messages to the same groups, in the same order."""
    if event_loop() is not None:
        for request in requests:  # a serving unit: each is handed to its loop, no waiting
            request_changed(request)
        return
    changes = [_change(request) for request in requests]
    transaction.on_commit(lambda: _send_all(_heard(changes)))


def _change(request: Request) -> tuple[tuple[str, ...], dict]:
    message = {
        "type": EVENT_TYPE,
        "id": str(request.pk),
        "team": request.team_id,
        "status": request.status,
    }
    return (request_group(request.pk), team_group(request.team_id)), message


def _heard(changes: list[tuple[tuple[str, ...], dict]]) -> list[tuple[tuple[str, ...], dict]]:
    """The changes someone can hear. On the embedded mode's in-memory layer, a group nobody
    joined in this process (a django-q2 worker's: no websocket is ever connected to it) gets
    nothing from a send, which still cost an event loop in a thread and a pass over the
    layer's channels per message: 50,000 of them for a batch's results. Redis's groups are
    the server's: every change is sent."""
    layer = get_channel_layer()
    if not isinstance(layer, InMemoryChannelLayer):
        return changes
    joined = layer.groups
    heard = []
    for groups, message in changes:
        if listening := tuple(group for group in groups if group in joined):
            heard.append((listening, message))
    return heard


def _send_all(changes: list[tuple[tuple[str, ...], dict]]) -> None:
    if not changes:
        return

    async def publish() -> int:
        for sent, (groups, message) in enumerate(changes):
            try:
                await _publish(groups, message)
            except Exception:
                return sent
        return len(changes)

    try:
        sent = async_to_sync(publish)()
    except Exception:
        sent = 0
    if sent < len(changes):
        # The changes are committed; subscribers catch up by updated_at.
        log.warning("could not publish %d request status changes", len(changes) - sent)


def _send(groups: tuple[str, ...], message: dict) -> None:
    if event_loop() is not None:
        # Called from a serving database thread (llmops.dbthreads): hand the message to the
        # event loop and go on, instead of blocking this thread on a round trip per group.
        on_loop(_schedule, groups, message)
        return
    if not (heard := _heard([(groups, message)])):
        return  # nobody in this process listens (a worker's in-memory layer)
    try:
        async_to_sync(_publish)(heard[0][0], message)
    except Exception:
        # The change is committed; a subscriber catches up by updated_at. Failing here would
        # turn a completed request into an error for its client.
        log.warning("could not publish %s of request %s", message["status"], message["id"])


# The last publication scheduled on each event loop: the next one waits for it, so a request's
# messages leave in the order its changes were committed ("running" before "completed").
_last: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _schedule(groups: tuple[str, ...], message: dict) -> None:
    loop = asyncio.get_running_loop()
    _last[loop] = loop.create_task(_publish_after(_last.get(loop), groups, message))


async def _publish_after(previous: asyncio.Task | None, groups, message: dict) -> None:
    if previous is not None and not previous.done():
        await asyncio.wait([previous])
    try:
        await _publish(groups, message)
    except Exception:
        log.warning("could not publish %s of request %s", message["status"], message["id"])


async def _publish(groups: tuple[str, ...], message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for group in groups:
        await layer.group_send(group, message)
