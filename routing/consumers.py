"""Websockets: /ws/stream/ streams completions, /ws/requests/ tells of request status changes.

Both accept a browser session (with an Origin from ALLOWED_HOSTS, checked by
llmops.websocket) or an `Authorization: Bearer <key>` header; anything else is refused at the
handshake. Messages are JSON objects with a `type`; a bad one gets `{"type": "error"}` and the
socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from contextlib import aclosing, suppress
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal
from types import SimpleNamespace
from typing import Any

from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed

from billing import selectors as billing_selectors
from billing.models import LedgerEntry
from billing.pricing import MONEY_QUANTUM, PricingError, live_prices, plain
from billing.services import processing_for
from llmops.dbthreads import db
from llmops.text import unstorable_text
from routing import selectors, services
from routing.apis import (
    RequestInputSerializer,
    RequestOutputSerializer,
    first_error,
    native_ask,
)
from routing.auth import ApiKeyAuthentication, KeyPrincipal, throttle_wait
from routing.events import request_group, team_group
from routing.models import Request
from routing.router import prompt_tokens_floor

log = logging.getLogger(__name__)

# What `done`, `stopped` and `error` repeat of the REST request object.
SUMMARY_FIELDS = (
    "status",
    "mode",
    "provider",
    "model",
    "finish_reason",
    "usage",
    "cost_usd",
    "counterfactual_cost_usd",
)
# A subscriber catching up reads changes this far back, so a change committed by another
# process while the last read ran is not skipped; the repeats are dropped as already sent.
RESYNC_OVERLAP = timedelta(seconds=5)
MAX_SUBSCRIBED_IDS = 1_000


class MessageError(Exception):
    def __init__(self, message: str, *, field: str = "", code: str = "invalid_message") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Caller:
    """Who is on the socket: a session user (the browser) or an API key's team."""

    principal: Any  # a User or a KeyPrincipal, as the selectors take it

    @property
    def user(self):
        return None if isinstance(self.principal, KeyPrincipal) else self.principal

    @property
    def api_key(self):
        return self.principal.api_key if isinstance(self.principal, KeyPrincipal) else None


def caller_from_scope(scope) -> Caller | None:
    """The caller, or None to refuse the handshake. A key must come in the Authorization
    header (query strings end up in logs); a session only counts with an Origin header, which
    browsers always send and the origin validator has already checked."""
    headers = dict(scope.get("headers") or [])
    if b"authorization" in headers:
        # The REST API's authentication, fed the handshake's header.
        handshake = SimpleNamespace(headers={"authorization": headers[b"authorization"]})
        try:
            found = ApiKeyAuthentication().authenticate(handshake)
        except AuthenticationFailed:
            return None
        return Caller(found[0]) if found else None
    user = scope.get("user")
    if user is not None and user.is_authenticated and b"origin" in headers:
        return Caller(user)
    return None


def parse_message(text_data: str | None, bytes_data: bytes | None) -> dict:
    raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
    if len(raw.encode()) > settings.LLMOPS_MAX_BODY_BYTES:
        raise MessageError(
            f"The message is over {settings.LLMOPS_MAX_BODY_BYTES} bytes.", code="too_large"
        )
    try:
        message = json.loads(raw)
    except ValueError as exc:
        raise MessageError(f"The message is not valid JSON: {exc}.") from None
    except RecursionError:
        raise MessageError("The message is nested too deeply.") from None
    if not isinstance(message, dict):
        raise MessageError("A message must be a JSON object with a `type`.")
    if (path := unstorable_text(message)) is not None:
        raise MessageError(
            f"{path}: contains a NUL character or an unpaired surrogate.", field=path
        )
    return message


def _dumps(message: dict) -> str:
    return json.dumps(message, cls=DjangoJSONEncoder)


class JsonSocket(AsyncWebsocketConsumer):
    """Authentication, message parsing and error replies shared by both endpoints."""

    handlers: dict[str, str] = {}  # message type -> method name

    async def connect(self) -> None:
        self.caller = await database_sync_to_async(caller_from_scope)(self.scope)
        if self.caller is None:
            await self.close()  # before accept: the handshake is answered 403
            return
        self.connected = True
        await self.accept()

    async def disconnect(self, code) -> None:
        self.connected = False

    async def receive(self, text_data=None, bytes_data=None) -> None:
        try:
            message = parse_message(text_data, bytes_data)
            kind = message.get("type")
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise MessageError(
                    f"Unknown message type {kind!r}; expected one of: {', '.join(self.handlers)}.",
                    field="type",
                    code="unknown_type",
                )
            await getattr(self, handler)(message)
        except MessageError as exc:
            await self.send_error(str(exc), field=exc.field, code=exc.code)
        except services.RequestRejected as exc:
            await self.send_error(exc.message, field=exc.field, code=exc.code)

    async def send_json(self, message: dict) -> None:
        if not getattr(self, "connected", False):
            return
        try:
            await self.send(text_data=_dumps(message))
        except Disconnected:
            # The client closed the socket and daphne knows before this consumer has heard:
            # nothing more to send, but the stream reads on to its usage, as after a
            # disconnect (see disconnect()), instead of failing as if llmops had.
            self.connected = False

    async def send_error(self, message: str, **fields) -> None:
        await self.send_json(
            {"type": "error", "message": message, **{k: v for k, v in fields.items() if v}}
        )

    async def throttle(self) -> None:
        wait = await db(throttle_wait, SimpleNamespace(user=self.caller.principal))
        if wait is not None:
            raise MessageError(
                f"Too many requests for this caller; retry in {wait:.0f} s.", code="throttled"
            )


# --- /ws/stream/ -----------------------------------------------------------------------


class StartSerializer(RequestInputSerializer):
    """`{"type": "start", "workload", "messages", "max_tokens", "model"?, "temperature"?}`;
    `team` picks among a session user's teams that share a workload slug."""

    type = serializers.ChoiceField(choices=["start"])
    team = serializers.SlugField(required=False)
    stream = None
    idempotency_key = None


class StreamConsumer(JsonSocket):
    """One completion at a time per socket; the stream runs in its own task so that `stop`
    and a disconnect are handled while tokens flow."""

    handlers = {"start": "start", "stop": "stop"}
    task: asyncio.Task | None = None
    request_id: str | None = None

    async def start(self, message: dict) -> None:
        if self.task is not None and not self.task.done():
            raise MessageError(
                "A completion is already streaming on this socket: wait for it or send stop.",
                code="busy",
            )
        received = time.monotonic()
        serializer = StartSerializer(data=message)
        if not serializer.is_valid():
            field, text = first_error(serializer.errors)
            raise MessageError(f"{field}: {text}", field=field)
        await self.throttle()
        admitted, started = await db(self._admit, serializer.validated_data)
        self.request_id = str(admitted.request.pk)
        self.task = asyncio.create_task(self._stream(admitted, started, received))

    def _admit(self, data: dict) -> tuple[services.Admitted, dict | None]:
        """The admitted request and its `started` message, built in the same database hop
        (it reads prices), so nothing stands between the provider's first token and the
        client but the send."""
        caller = self.caller
        ask = native_ask(
            workloads=selectors.workload_list(user=caller.principal),
            data={**data, "stream": True},
            source=Request.Source.WEBSOCKET,
        )
        admitted = services.request_admit(
            team=ask.workload.team,
            api_key=caller.api_key,
            user=caller.user,
            ask=ask,
            sync_only=False,
        )
        if admitted.request.status == Request.Status.QUEUED:
            return admitted, None
        return admitted, _started(admitted)

    async def _stream(
        self, admitted: services.Admitted, started: dict | None, received: float
    ) -> None:
        request = admitted.request
        rid = str(request.pk)
        if request.status == Request.Status.QUEUED:
            await self.send_json(
                {
                    "type": "queued",
                    "request_id": rid,
                    "deadline": request.deadline_at,
                    "reason": request.decision_reason,
                }
            )
            return
        first = last = None
        deltas = 0
        try:
            await self.send_json(started)
            if request.status == Request.Status.COMPLETED:  # a cache hit
                first = time.monotonic()
                await self.send_json({"type": "delta", "text": request.output})
            else:
                async with aclosing(services.request_run(admitted, stream=True)) as events:
                    async for event in events:
                        if isinstance(event, services.Chunk):
                            last = time.monotonic()
                            first = first or last
                            deltas += 1
                            await self.send_json({"type": "delta", "text": event.text})
        except services.RequestFailed as exc:
            summary = await db(self._summary, rid)
            await self.send_json({"type": "error", "message": str(exc), **summary})
            return
        except asyncio.CancelledError:
            # Stopped before request_run began (it settles its own request otherwise): the
            # hold goes back. A no-op once the request is closed.
            await asyncio.shield(db(services.request_abandon, admitted))
            raise
        except Exception:
            log.exception("stream of request %s failed", rid)
            await asyncio.shield(db(services.request_abandon, admitted))
            await self.send_error("llmops failed to stream this request.", request_id=rid)
            return
        summary = await db(self._summary, rid, read=self.connected)
        usage = summary["usage"] or {}
        await self.send_json(
            {
                "type": "done",
                **summary,
                "ttft_ms": None if first is None else round((first - received) * 1000),
                # A cache hit generated nothing.
                "tokens_per_s": None
                if request.mode == Request.Mode.CACHE or first is None
                else stream_tokens_per_s(
                    visible_tokens=(usage.get("output_tokens") or 0)
                    - (usage.get("reasoning_tokens") or 0),
                    deltas=deltas,
                    seconds=last - first,
                ),
            }
        )

    async def stop(self, message: dict) -> None:
        if self.task is None or self.task.done():
            raise MessageError("Nothing is streaming on this socket.", code="not_streaming")
        self.task.cancel()
        with suppress(asyncio.CancelledError):
            await self.task
        summary = await db(self._summary, self.request_id)
        await self.send_json({"type": "stopped", **summary})

    async def disconnect(self, code) -> None:
        await super().disconnect(code)
        task = self.task
        if task is None or task.done():
            return
        # Read the answer on for a moment: its real usage beats an estimate. Past the bound,
        # cancel (request_run bills an estimate flagged as such and settles the hold).
        done, _ = await asyncio.wait({task}, timeout=settings.LLMOPS_WS_DRAIN_SECONDS)
        if not done:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    def _summary(self, request_id: str, *, read: bool = False) -> dict:
        """What `done`, `stopped` and `error` say of a request's outcome, from the ledger."""
        request = selectors.request_list(user=self.caller.principal).get(pk=request_id)
        if read:
            services.request_mark_read(request=request)
        body = RequestOutputSerializer(request).data
        return {
            "request_id": request_id,
            **{name: body[name] for name in SUMMARY_FIELDS},
            "estimated": request.ledger_entries.filter(kind=LedgerEntry.Kind.ESTIMATE).exists(),
        }


def stream_tokens_per_s(*, visible_tokens: int, deltas: int, seconds: float) -> float | None:
    """The rate tokens arrived at after the first delta: the answer's visible tokens (output
    less reasoning, which is spent before the first token) beyond the first delta's share,
    over the seconds from the first delta to the last. The playground's live figure is the
    same quotient over the tokens so far, so the two agree as the answer ends. None when
    there is no interval to measure (an answer in one piece)."""
    if deltas < 2 or seconds <= 0 or visible_tokens <= 0:
        return None
    return round(visible_tokens * (deltas - 1) / deltas / seconds, 1)


def _started(admitted: services.Admitted) -> dict:
    """The `started` message: where the request goes, and the prices a client's running
    cost uses (runs in admission's database hop: a price may need a read)."""
    request = admitted.request
    model = request.model or (admitted.chain[0] if admitted.chain else None)
    prompt_cost = output_rate = None
    if request.mode == Request.Mode.CACHE:
        prompt_cost = output_rate = Decimal(0)
    elif model is not None:
        try:
            version = billing_selectors.price_in_force(
                model, processing_for(request.mode), timezone.now()
            )
        except PricingError:
            pass  # admission priced the hold, so only a price deleted since lands here
        else:
            prompt_cost, output_rate = live_prices(
                version, prompt_floor=prompt_tokens_floor(request.params["messages"])
            )
    return {
        "type": "started",
        "request_id": str(request.pk),
        "mode": request.mode,
        "provider": model.provider.slug if model else None,
        "model": model.model_id if model else None,
        "reason": request.decision_reason,
        "output_usd_per_mtok": None if output_rate is None else plain(output_rate),
        "prompt_cost_floor_usd": None if prompt_cost is None else plain(_floor(prompt_cost)),
    }


def _floor(amount: Decimal) -> Decimal:
    """Down to the ledger's precision: a floor must not round up past what is billed."""
    return amount.quantize(MONEY_QUANTUM, rounding=ROUND_FLOOR)


# --- /ws/requests/ ---------------------------------------------------------------------


class SubscribeSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["subscribe", "unsubscribe"])
    request_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=MAX_SUBSCRIBED_IDS
    )
    all = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if not attrs.get("request_ids") and not attrs["all"]:
            raise serializers.ValidationError("Name `request_ids`, or set `all` to true.")
        return attrs


class RequestsConsumer(JsonSocket):
    """Pushes `{"type": "status", "request": {...}}` for every status change of the requests
    a client subscribed to (by id, or `all` of its teams'). Pushes arrive through the channel
    layer; a periodic read of `Request.updated_at` catches what the layer did not carry."""

    handlers = {"subscribe": "subscribe", "unsubscribe": "unsubscribe"}

    async def connect(self) -> None:
        self.ids: set[uuid.UUID] = set()
        self.team_ids: set[int] = set()
        # (status, updated_at) last sent per request: a push and a catch-up read of the same
        # change are told once.
        self.sent: OrderedDict[uuid.UUID, tuple] = OrderedDict()
        self.since = timezone.now()
        self.resync: asyncio.Task | None = None
        await super().connect()

    async def subscribe(self, message: dict) -> None:
        data = self._validated(message)
        if data["type"] != "subscribe":
            raise MessageError("type: expected subscribe.", field="type")
        self.since = min(self.since, timezone.now() - RESYNC_OVERLAP)
        ids = data.get("request_ids") or []
        found, team_ids = await database_sync_to_async(self._visible)(ids, data["all"])
        unknown = [str(i) for i in ids if i not in found]
        if len(self.ids | set(found)) > MAX_SUBSCRIBED_IDS:
            raise MessageError(
                f"At most {MAX_SUBSCRIBED_IDS} request ids per socket; subscribe to `all`.",
                field="request_ids",
            )
        # Join the groups before reading the current state: a change in between is then
        # pushed rather than lost.
        for request_id in found:
            await self.channel_layer.group_add(request_group(request_id), self.channel_name)
        for team_id in team_ids:
            await self.channel_layer.group_add(team_group(team_id), self.channel_name)
        self.ids |= set(found)
        self.team_ids |= team_ids
        await self.send_json(
            {
                "type": "subscribed",
                "request_ids": sorted(str(i) for i in self.ids),
                "all": bool(self.team_ids),
            }
        )
        if unknown:
            await self.send_error(
                f"Unknown request ids (not found among your teams'): {', '.join(unknown)}.",
                field="request_ids",
                code="not_found",
            )
        await self._push(ids=found)
        if self.resync is None:
            self.resync = asyncio.create_task(self._catch_up())

    async def unsubscribe(self, message: dict) -> None:
        data = self._validated(message)
        for request_id in data.get("request_ids") or []:
            if request_id in self.ids:
                self.ids.discard(request_id)
                await self.channel_layer.group_discard(request_group(request_id), self.channel_name)
        if data["all"]:
            for team_id in self.team_ids:
                await self.channel_layer.group_discard(team_group(team_id), self.channel_name)
            self.team_ids = set()
        await self.send_json(
            {
                "type": "subscribed",
                "request_ids": sorted(str(i) for i in self.ids),
                "all": bool(self.team_ids),
            }
        )

    def _validated(self, message: dict) -> dict:
        serializer = SubscribeSerializer(data=message)
        if not serializer.is_valid():
            field, text = first_error(serializer.errors)
            raise MessageError(f"{field}: {text}" if field else text, field=field)
        return serializer.validated_data

    def _visible(self, ids: list[uuid.UUID], all_teams: bool) -> tuple[list[uuid.UUID], set]:
        principal = self.caller.principal
        found = list(
            selectors.request_list(user=principal)
            .filter(pk__in=ids)
            .values_list("pk", flat=True)
            .order_by()
        )
        teams = (
            set(selectors.teams_for(principal).values_list("pk", flat=True)) if all_teams else set()
        )
        return found, teams

    async def request_changed(self, event: dict) -> None:
        """A group message from routing.events."""
        request_id = uuid.UUID(event["id"])
        if request_id in self.ids or event.get("team") in self.team_ids:
            await self._push(ids=[request_id])

    async def _push(self, *, ids=None, since=None) -> None:
        bodies = await database_sync_to_async(self._changed)(ids, since)
        for body in bodies:
            await self.send_json(
                {
                    "type": "status",
                    "request_id": body["id"],
                    "status": body["status"],
                    "request": body,
                }
            )

    def _changed(self, ids, since) -> list[dict]:
        """Requests (by id, or changed since `since` among the subscribed) not yet told."""
        qs = selectors.request_list(user=self.caller.principal)
        if ids is not None:
            qs = qs.filter(pk__in=ids)
        else:
            qs = qs.filter(updated_at__gte=since).filter(
                Q(pk__in=list(self.ids)) | Q(team_id__in=list(self.team_ids))
            )
        bodies = []
        for request in qs.order_by("updated_at")[:500]:
            mark = (request.status, request.updated_at)
            if self.sent.get(request.pk) == mark:
                continue
            self.sent[request.pk] = mark
            self.sent.move_to_end(request.pk)
            if request.status == Request.Status.COMPLETED:
                services.request_mark_read(request=request)
            bodies.append(RequestOutputSerializer(request).data)
        while len(self.sent) > 10 * MAX_SUBSCRIBED_IDS:
            self.sent.popitem(last=False)
        return bodies

    async def _catch_up(self) -> None:
        interval = settings.LLMOPS_WS_RESYNC_SECONDS
        while True:
            await asyncio.sleep(interval)
            read_at = timezone.now()
            await self._push(since=self.since)
            self.since = read_at - RESYNC_OVERLAP

    async def disconnect(self, code) -> None:
        await super().disconnect(code)
        if self.resync is not None:
            self.resync.cancel()
        for request_id in self.ids:
            await self.channel_layer.group_discard(request_group(request_id), self.channel_name)
        for team_id in self.team_ids:
            await self.channel_layer.group_discard(team_group(team_id), self.channel_name)
