"""Websockets: /ws/stream/ streams completions, /ws/requests/ tells of request status changes.

Both accept a browser session (with an Origin of this site, checked by llmops.websocket) or an
`Authorization: Bearer <key>` header; anything else is refused at the handshake. Messages are
JSON objects with a `type`; a bad one gets `{"type": "error"}` and the socket stays open.

A socket is held to what REST is held to (routing.socket_auth): its credentials are re-read
before every message and every few seconds, and it is closed (4401) once they end; its caller
has at most LLMOPS_WS_MAX_SOCKETS_PER_CALLER open; it sends at most
LLMOPS_WS_MESSAGES_PER_SECOND (bursts of LLMOPS_WS_MESSAGE_BURST) messages of at most
LLMOPS_WS_MAX_MESSAGE_BYTES, and follows at most LLMOPS_WS_MAX_SUBSCRIPTIONS requests.
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
from decimal import ROUND_FLOOR, Decimal
from types import SimpleNamespace
from typing import Any

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed

from billing import selectors as billing_selectors
from billing.models import LedgerEntry
from billing.pricing import MONEY_QUANTUM, PricingError, live_prices, plain, prompt_tokens_floor
from billing.services import processing_for
from llmops.dbthreads import db
from routing import asks, outputs, selectors, services, socket_auth, socket_resync
from routing.auth import ApiKeyAuthentication, KeyPrincipal, throttle_wait
from routing.events import request_group, team_group
from routing.models import Mode, Request
from routing.providers import Delta
from routing.socket_auth import Credential

log = logging.getLogger(__name__)

# What `done`, `stopped` and `error` repeat of the REST request object.
SUMMARY_FIELDS = (
    "status",
    "mode",
    "provider",
    "model",
    "finish_reason",
    "tool_calls",  # the answer's, whole (a stream's deltas carry text)
    "usage",
    "cost_usd",
    "counterfactual_cost_usd",
)


class MessageError(Exception):
    def __init__(self, message: str, *, field: str = "", code: str = "invalid_message") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Caller:
    """Who is on the socket: a session user (the browser) or an API key's team, and what it
    authenticated with (re-read by routing.socket_auth for the socket's whole life)."""

    principal: Any  # a User or a KeyPrincipal, as the selectors take it
    credential: Credential

    @property
    def user(self):
        return None if isinstance(self.principal, KeyPrincipal) else self.principal

    @property
    def api_key(self):
        return self.principal.api_key if isinstance(self.principal, KeyPrincipal) else None


def caller_from_scope(scope) -> Caller | None:
    """The caller, or None to refuse the handshake. A key must come in the Authorization
    header (query strings end up in logs); a session only counts with an Origin header, which
    browsers always send and llmops.websocket has checked."""
    headers = dict(scope.get("headers") or [])
    if b"authorization" in headers:
        # The REST API's authentication, fed the handshake's header.
        handshake = SimpleNamespace(headers={"authorization": headers[b"authorization"]})
        try:
            found = ApiKeyAuthentication().authenticate(handshake)
        except AuthenticationFailed:
            return None
        return Caller(found[0], Credential(key_id=found[1].pk)) if found else None
    user = scope.get("user")
    if user is not None and user.is_authenticated and b"origin" in headers:
        session = scope.get("session")
        # No session (a scope built by hand) re-reads as ended: the socket closes at once.
        session_key = session.session_key if session is not None else None
        return Caller(user, Credential(session_key=session_key, user_id=user.pk))
    return None


def parse_message(text_data: str | None, bytes_data: bytes | None) -> dict:
    raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
    try:
        # Read as the HTTP APIs read a body: NaN, Infinity, 1e999, integers past 64 bits, NUL
        # and lone surrogates are refused naming the field.
        return asks.json_object(
            raw,
            what="The message",
            not_object="A message must be a JSON object with a `type`.",
        )
    except asks.RequestRejected as exc:
        raise MessageError(exc.message, field=exc.field) from None


def _dumps(message: dict) -> str:
    return json.dumps(message, cls=DjangoJSONEncoder)


class TokenBucket:
    """LLMOPS_WS_MESSAGES_PER_SECOND sustained, LLMOPS_WS_MESSAGE_BURST at once."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class JsonSocket(AsyncWebsocketConsumer):
    """Authentication, limits, message parsing and error replies shared by both endpoints."""

    handlers: dict[str, str] = {}  # message type -> method name
    connected = False
    # Set (from any thread) once the credentials ended: nothing is sent after that.
    revoked = False
    credential: Credential | None = None

    async def connect(self) -> None:
        self.caller = await db(caller_from_scope, self.scope)
        if self.caller is None:
            await self.close()  # before accept: the handshake is answered 403
            return
        self.credential = self.caller.credential
        self.loop = asyncio.get_running_loop()
        self.bucket = TokenBucket(
            rate=settings.LLMOPS_WS_MESSAGES_PER_SECOND, burst=settings.LLMOPS_WS_MESSAGE_BURST
        )
        self.refused = 0  # messages refused in a row for their rate
        local = socket_auth.register(self)
        try:
            allowed = await db(socket_auth.claim_slot, self.credential, local)
        except Exception:
            log.exception("could not count the sockets of %s", self.credential.caller)
            allowed = True  # a cache outage must not take websockets down with it
        for group in socket_auth.groups_of(self.credential):
            await self.channel_layer.group_add(group, self.channel_name)
        if self.revoked:  # revoked while this handshake was being read
            await self.close()
            return
        # Accepted before the cap is told, so that the client reads why it is closed.
        self.connected = True
        await self.accept()
        self.accepted = True
        if not allowed:
            await self.send_error(
                f"This caller has {settings.LLMOPS_WS_MAX_SOCKETS_PER_CALLER} websockets open "
                "already; close one first.",
                code="too_many_sockets",
            )
            await self.shut(socket_auth.CLOSE_POLICY)
        elif self.revoked:
            await self.shut(socket_auth.CLOSE_CREDENTIALS_ENDED)

    async def dispatch(self, message) -> None:
        # channels' dispatch first runs close_old_connections in asgiref's thread, a hop
        # there and back before every message: the first token of a stream waited for it.
        # Nothing here uses that thread's connection; the database work runs in
        # llmops.dbthreads, whose units close their own.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code) -> None:
        self.connected = False
        if self.credential is None:
            return  # refused at the handshake
        socket_auth.unregister(self)
        for group in socket_auth.groups_of(self.credential):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def shut(self, code: int) -> None:
        """Close from our side; the disconnect that follows cleans up."""
        self.connected = False
        if not getattr(self, "shut_code", None):
            self.shut_code = code
            await self.close(code=code)

    def revoke(self) -> None:
        """The credentials ended (called from any thread): send nothing more, close 4401."""
        self.revoked = True
        self.connected = False
        self.loop.call_soon_threadsafe(self._close_revoked)

    def _close_revoked(self) -> None:
        # Before the accept, connect() sees the flag and refuses the handshake itself.
        if getattr(self, "accepted", False) and not getattr(self, "shut_code", None):
            self.loop.create_task(self.shut(socket_auth.CLOSE_CREDENTIALS_ENDED))

    async def credentials_changed(self, event: dict) -> None:
        """A group message from routing.socket_auth: another process changed our
        credentials; re-read them."""
        if not self.revoked and await db(socket_auth.principal_for, self.credential) is None:
            self.revoke()

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if not self.connected:
            return  # closing: what arrives meanwhile is dropped unread
        if not self.bucket.take():
            # The error once per run of refused messages: answering each one would let a
            # flood fill the outgoing buffer instead.
            self.refused += 1
            if self.refused == 1:
                await self.send_error(
                    f"Over {settings.LLMOPS_WS_MESSAGES_PER_SECOND} messages a second; this "
                    "one was dropped.",
                    code="rate_limited",
                )
            if self.refused >= settings.LLMOPS_WS_MESSAGE_BURST:
                await self.shut(socket_auth.CLOSE_POLICY)
            return
        self.refused = 0
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.LLMOPS_WS_MAX_MESSAGE_BYTES:
            await self.send_error(
                f"The message is over {settings.LLMOPS_WS_MAX_MESSAGE_BYTES} bytes.",
                code="too_large",
            )
            await self.shut(socket_auth.CLOSE_TOO_LARGE)
            return
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
            # Who the caller is, read again: a key revoked in another process since the last
            # re-read must not start a completion. A handler in `rechecks_caller` does it
            # itself, in the database hop it makes anyway (recheck_caller).
            if handler not in self.rechecks_caller:
                principal = await db(socket_auth.principal_for, self.credential)
                if principal is None:
                    self.revoke()
                    return
                self.caller = Caller(principal, self.credential)
            await getattr(self, handler)(message)
        except MessageError as exc:
            await self.send_error(str(exc), field=exc.field, code=exc.code)
        except asks.RequestRejected as exc:
            await self.send_error(exc.message, field=exc.field, code=exc.code)

    async def send_json(self, message: dict) -> None:
        if self.revoked or not self.connected:
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

    rechecks_caller: frozenset[str] = frozenset()

    def recheck_caller(self) -> bool:
        """receive()'s re-read of the caller, in a database thread: False if the credentials
        ended (the socket is being closed)."""
        principal = socket_auth.principal_for(self.credential)
        if principal is None:
            self.revoke()
            return False
        self.caller = Caller(principal, self.credential)
        return True

    def throttle(self) -> None:
        """The caller's request rate (in a database thread: the counter is in the cache)."""
        wait = throttle_wait(SimpleNamespace(user=self.caller.principal))
        if wait is not None:
            raise MessageError(
                f"Too many requests for this caller; retry in {wait:.0f} s.", code="throttled"
            )


# --- /ws/stream/ -----------------------------------------------------------------------


class StartSerializer(asks.RequestInputSerializer):
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
    # The first token waits for every hop to a database thread before it: one, not three.
    rechecks_caller = frozenset({"start"})
    task: asyncio.Task | None = None
    request_id: str | None = None

    async def start(self, message: dict) -> None:
        if self.task is not None and not self.task.done():
            raise MessageError(
                "A completion is already streaming on this socket: wait for it or send stop.",
                code="busy",
            )
        received = time.monotonic()
        admitted_now = await db(self._admit, message)
        if admitted_now is None:
            return  # the credentials ended
        admitted, started = admitted_now
        self.request_id = str(admitted.request.pk)
        self.task = asyncio.create_task(self._stream(admitted, started, received))

    def _admit(self, message: dict) -> tuple[services.Admitted, dict | None] | None:
        """The caller re-read, the message validated, the caller's rate taken, the request
        admitted and its `started` message built (it reads prices), all in one database hop,
        so nothing stands between the provider's first token and the client but the send.
        None if the caller's credentials ended."""
        if not self.recheck_caller():
            return None
        serializer = StartSerializer(data=message)
        if not serializer.is_valid():
            field, text = asks.first_error(serializer.errors)
            raise MessageError(f"{field}: {text}", field=field)
        self.throttle()
        data = serializer.validated_data
        caller = self.caller
        ask = asks.native_ask(
            # A key's team's workloads are memoized; a session user's are read.
            workloads=caller.api_key.team
            if caller.api_key
            else selectors.workload_list(user=caller.principal),
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
        services.request_begin(admitted)  # the first call's circuit and endpoint, same hop
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
                        if isinstance(event, Delta):
                            if not event.text:
                                continue  # a relayed chunk without text (the finish, usage)
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
                if request.mode == Mode.CACHE or first is None
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
        body = outputs.RequestOutputSerializer(request).data
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
    if request.mode == Mode.CACHE:
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
    request_ids = serializers.ListField(child=serializers.UUIDField(), required=False)
    all = serializers.BooleanField(required=False, default=False)

    def validate_request_ids(self, value):
        limit = settings.LLMOPS_WS_MAX_SUBSCRIPTIONS
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} request ids per socket.")
        return value

    def validate(self, attrs):
        if not attrs.get("request_ids") and not attrs["all"]:
            raise serializers.ValidationError("Name `request_ids`, or set `all` to true.")
        return attrs


class RequestsConsumer(JsonSocket):
    """Pushes `{"type": "status", "request": {...}}` for every status change of the requests
    a client subscribed to (by id, or `all` of its teams'). Pushes arrive through the channel
    layer; the process's poller (routing.socket_resync) hands over what the layer did not
    carry."""

    handlers = {"subscribe": "subscribe", "unsubscribe": "unsubscribe"}

    async def connect(self) -> None:
        self.ids: dict[uuid.UUID, int] = {}  # followed request -> its team
        self.team_ids: set[int] = set()
        # (status, updated_at) last sent per request: a push and a catch-up read of the same
        # change are told once.
        self.sent: OrderedDict[uuid.UUID, tuple] = OrderedDict()
        await super().connect()

    async def subscribe(self, message: dict) -> None:
        if len(message.get("request_ids") or []) > settings.LLMOPS_WS_MAX_SUBSCRIPTIONS:
            raise MessageError(  # before the serializer parses thousands of ids
                f"At most {settings.LLMOPS_WS_MAX_SUBSCRIPTIONS} request ids per socket; "
                "subscribe to `all`.",
                field="request_ids",
            )
        data = self._validated(message)
        if data["type"] != "subscribe":
            raise MessageError("type: expected subscribe.", field="type")
        ids = data.get("request_ids") or []
        found, team_ids = await db(self._visible, ids, data["all"])
        unknown = [str(i) for i in ids if i not in found]
        if len(self.ids.keys() | found.keys()) > settings.LLMOPS_WS_MAX_SUBSCRIPTIONS:
            raise MessageError(
                f"At most {settings.LLMOPS_WS_MAX_SUBSCRIPTIONS} request ids per socket; "
                "subscribe to `all`.",
                field="request_ids",
            )
        # Join the groups before reading the current state: a change in between is then
        # pushed rather than lost.
        for request_id in found.keys() - self.ids.keys():
            await self.channel_layer.group_add(request_group(request_id), self.channel_name)
        for team_id in team_ids - self.team_ids:
            await self.channel_layer.group_add(team_group(team_id), self.channel_name)
        self.ids.update(found)
        self.team_ids |= team_ids
        await self.send_json(self._subscribed())
        if unknown:
            await self.send_error(
                f"Unknown request ids (not found among your teams'): {', '.join(unknown)}.",
                field="request_ids",
                code="not_found",
            )
        await self.push(list(found))
        socket_resync.poller().add(self)

    async def unsubscribe(self, message: dict) -> None:
        data = self._validated(message)
        for request_id in data.get("request_ids") or []:
            if self.ids.pop(request_id, None) is not None:
                await self.channel_layer.group_discard(request_group(request_id), self.channel_name)
        if data["all"]:
            for team_id in self.team_ids:
                await self.channel_layer.group_discard(team_group(team_id), self.channel_name)
            self.team_ids = set()
        await self.send_json(self._subscribed())

    def _subscribed(self) -> dict:
        return {
            "type": "subscribed",
            "request_ids": sorted(str(i) for i in self.ids),
            "all": bool(self.team_ids),
        }

    def _validated(self, message: dict) -> dict:
        serializer = SubscribeSerializer(data=message)
        if not serializer.is_valid():
            field, text = asks.first_error(serializer.errors)
            raise MessageError(f"{field}: {text}" if field else text, field=field)
        return serializer.validated_data

    def _visible(self, ids: list[uuid.UUID], all_teams: bool) -> tuple[dict, set]:
        principal = self.caller.principal
        found = dict(
            selectors.request_list(user=principal)
            .filter(pk__in=ids)
            .values_list("pk", "team_id")
            .order_by()
        )
        teams = (
            set(selectors.teams_for(principal).values_list("pk", flat=True)) if all_teams else set()
        )
        return found, teams

    # What routing.socket_resync's poller asks of a subscriber.

    def teams_followed(self) -> set[int]:
        return self.team_ids | set(self.ids.values())

    def wants(self, change: socket_resync.Change) -> bool:
        return (change.id in self.ids or change.team_id in self.team_ids) and self.sent.get(
            change.id
        ) != change.mark

    async def request_changed(self, event: dict) -> None:
        """A group message from routing.events."""
        request_id = uuid.UUID(event["id"])
        if request_id in self.ids or event.get("team") in self.team_ids:
            await self.push([request_id])

    async def push(self, ids: list[uuid.UUID]) -> None:
        if not ids or not self.connected:
            return
        bodies = await db(self._changed, ids)
        for body in bodies:
            await self.send_json(
                {
                    "type": "status",
                    "request_id": body["id"],
                    "status": body["status"],
                    "request": body,
                }
            )

    def _changed(self, ids: list[uuid.UUID]) -> list[dict]:
        """Those of `ids` this caller may read whose current state it was not told yet."""
        # Who the caller is, read again in this hop: credentials another process ended (a key
        # revoked, a session deleted by a command) reach this daphne by the periodic re-read,
        # up to LLMOPS_WS_AUTH_RECHECK_SECONDS later; no push goes out meanwhile.
        if not self.recheck_caller():
            return []
        qs = selectors.request_list(user=self.caller.principal).filter(pk__in=ids)
        bodies = []
        limit = settings.LLMOPS_WS_MAX_SUBSCRIPTIONS
        for request in qs.order_by("updated_at")[:500]:
            mark = (request.status, request.updated_at)
            if self.sent.get(request.pk) == mark:
                continue
            self.sent[request.pk] = mark
            self.sent.move_to_end(request.pk)
            if request.status == Request.Status.COMPLETED and not self.revoked:
                services.request_mark_read(request=request)
            bodies.append(outputs.RequestOutputSerializer(request).data)
        while len(self.sent) > 10 * limit:
            self.sent.popitem(last=False)
        return bodies

    async def disconnect(self, code) -> None:
        await super().disconnect(code)
        socket_resync.poller().discard(self)
        for request_id in self.ids:
            await self.channel_layer.group_discard(request_group(request_id), self.channel_name)
        for team_id in self.team_ids:
            await self.channel_layer.group_discard(team_group(team_id), self.channel_name)
