"""What the serving endpoints share, whichever protocol they speak: authenticate, validate
and admit a request in a worker thread, error bodies in each API's shape, server-sent events,
and a streamed body that settles a request its client never read.

The endpoints themselves (routing/apis.py natively, routing/openai_apis.py for OpenAI
clients) are async views, not DRF ones: a provider call takes seconds, and Django runs every
sync view of an ASGI server on one shared thread, so a sync view would serialise all traffic
behind the slowest completion. DRF still validates (in a worker thread) and documents them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.core.serializers.json import DjangoJSONEncoder
from django.http import JsonResponse, StreamingHttpResponse
from rest_framework.exceptions import AuthenticationFailed

from llmops.dbthreads import db
from routing import asks, message_asks, services
from routing.auth import ApiKeyAuthentication, throttle_key
from routing.models import ApiKey, Request
from routing.protocols import openai
from routing.providers import Delta


def native_error(status: int, message: str, *, field: str = "", code: str = "") -> JsonResponse:
    body = {"detail": message, "code": code or "invalid_request"}
    if field:
        body["field"] = field
    return JsonResponse(body, status=status)


def openai_error(
    status: int,
    message: str,
    *,
    field: str = "",
    code: str = "",
    rid: str | None = None,
    retry_after: float | None = None,
) -> JsonResponse:
    return identified(
        JsonResponse(openai.error_body(status, message, param=field, code=code), status=status),
        rid,
        retry_after=retry_after,
    )


def authenticate(http_request) -> ApiKey:
    found = ApiKeyAuthentication().authenticate(http_request)
    if found is None:
        raise AuthenticationFailed("Authentication credentials were not provided.")
    return found[1]


# Each surface's body serializer and the Ask it makes: OpenAI-compatible, and native.
OPENAI_SURFACES = {
    "chat": (asks.ChatCompletionInputSerializer, asks.openai_ask),
    "embeddings": (asks.EmbeddingsInputSerializer, asks.embeddings_ask),
    "responses": (asks.ResponsesInputSerializer, asks.responses_ask),
    "messages": (message_asks.MessagesInputSerializer, message_asks.messages_ask),
}
# The source each client-protocol surface records its requests under.
SURFACE_SOURCE = {"messages": Request.Source.ANTHROPIC}
NATIVE_SURFACES = {
    "chat": (asks.RequestInputSerializer, asks.native_ask),
    "embeddings": (asks.NativeEmbeddingsInputSerializer, asks.native_embeddings_ask),
}


def prepare(http_request, *, openai: bool, surface: str = "chat") -> services.Admitted:
    """Authenticate, validate and admit (sync: runs in a worker thread)."""
    key = authenticate(http_request)
    if (wait := throttle_key(http_request, key)) is not None:
        raise asks.RequestRejected(
            429,
            f"Too many requests for this API key; retry in {wait:.0f} s.",
            code="throttled",
            retry_after=wait,
        )
    body = asks.json_object(http_request.body)
    serializer_class, make_ask = (OPENAI_SURFACES if openai else NATIVE_SURFACES)[surface]
    serializer = serializer_class(data=body)
    if not serializer.is_valid():
        field, message = asks.first_error(serializer.errors)
        raise asks.RequestRejected(400, f"{field}: {message}", field=field)
    data = serializer.validated_data
    team = key.team
    if not openai:
        ask = make_ask(
            workloads=team,  # the key's team's workloads
            data=data,
            idempotency_key=data.get("idempotency_key")
            or http_request.headers.get("Idempotency-Key"),
        )
        admitted = services.request_admit(team=team, api_key=key, ask=ask, sync_only=False)
        return services.request_begin(admitted)
    extra = {"headers": message_asks.relayed_headers(http_request)} if surface == "messages" else {}
    ask = make_ask(
        asks.openai_workload(http_request, key),
        data,
        source=SURFACE_SOURCE.get(surface, Request.Source.OPENAI),
        idempotency_key=http_request.headers.get("Idempotency-Key"),
        **extra,
    )
    return services.request_begin(
        services.request_admit(team=team, api_key=key, ask=ask, sync_only=True)
    )


async def admit(http_request, *, openai: bool, surface: str = "chat", fail=None):
    """(admitted, None) or (None, an error response: by `fail`, else in the OpenAI or native
    API's shape)."""
    fail = fail or (openai_error if openai else native_error)
    admission = asyncio.ensure_future(db(prepare, http_request, openai=openai, surface=surface))
    try:
        return await asyncio.shield(admission), None
    except asyncio.CancelledError:
        # The client left during admission. The admission still completes in its database
        # thread, and would leave a running request holding budget that nobody will run.
        with contextlib.suppress(Exception):
            admitted = await admission
            if not admitted.replay:  # a replay's original is still someone else's
                await db(services.request_abandon, admitted)
        raise
    except AuthenticationFailed as exc:
        return None, fail(401, str(exc.detail), code="unauthorized")
    except asks.RequestRejected as exc:
        response = fail(exc.status, exc.message, field=exc.field, code=exc.code)
        if exc.retry_after is not None:
            response = identified(
                response, response.get("x-request-id"), retry_after=exc.retry_after
            )
        return None, response


def sse(event: str | None, data) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, cls=DjangoJSONEncoder)
    return f"{head}data: {payload}\n\n".encode()


class StreamBody:
    """A streamed request's response body. If the client leaves before the body's first read,
    request_run never starts (or, when the view awaited its first event, waits at it), so its
    own clean-up cannot run and the request would stay running with its hold taken; Django
    closes the body however the response ended, and a body never read settles it then: the
    hold given back, or the started call closed and billed as request_run does for a client
    gone."""

    def __init__(self, body, admitted: services.Admitted, events=None) -> None:
        self.body, self.admitted, self.started = body, admitted, False
        self.events = events

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        self.started = True
        return await self.body.__anext__()

    def close(self) -> None:  # sync: Django calls it through sync_to_async
        if self.started:
            return
        if self.events is not None:
            async_to_sync(self.events.aclose)()
        services.request_abandon(self.admitted)  # a no-op once the request is closed


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
REPLAY_STATUS = {Request.Status.QUEUED: 202, Request.Status.FAILED: 502}
# What a replayed request that failed upstream (every model of its chain) says: the first
# answer's message. A refusal at admission replays by itself (services.refusal_of).
UPSTREAM_FAILED = "Every model in the chain failed: {error}"


def openai_unfinished_replay(request: Request, rid: str) -> JsonResponse:
    """An Idempotency-Key retry of a request that did not complete."""
    if request.status == Request.Status.FAILED:
        return openai_error(
            502, UPSTREAM_FAILED.format(error=request.error), code="upstream_failed", rid=rid
        )
    # Still running, or cancelled (its client left): a 409, which the SDK retries.
    return openai_error(
        409,
        f"The request with this Idempotency-Key is {request.status}.",
        code="in_progress",
        rid=rid,
    )


def identified(response, rid: str | None = None, *, retry_after: float | None = None):
    """Every /v1 answer names its request (x-request-id: the SDKs' `_request_id`, the id to
    look the request up by) and, when trying again later can succeed, how long to wait."""
    response["x-request-id"] = rid or f"req_{uuid.uuid4().hex}"
    if retry_after is not None:
        # The SDKs read retry-after-ms first (a wait under a second), then retry-after.
        response["retry-after-ms"] = str(max(1, round(retry_after * 1000)))
        response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def openai_failure(exc: services.RequestFailed, rid: str) -> JsonResponse:
    """A request that no provider answered: a provider's refusal as the provider worded it,
    every provider busy as 429/503 with Retry-After, anything else 502."""
    refusal = exc.provider_error
    if refusal is not None and refusal.body is not None:
        body = openai.error_envelope(refusal.body, status=exc.status)
        return identified(JsonResponse(body, status=exc.status), rid)
    code = {429: "rate_limit_exceeded", 503: "overloaded"}.get(exc.status, "upstream_failed")
    return openai_error(exc.status, str(exc), code=code, rid=rid, retry_after=exc.retry_after)


def method_not_allowed(allowed: str, *, openai: bool = True, fail=None) -> JsonResponse:
    """A 405 naming the one method a serving endpoint answers, in its API's error shape."""
    fail = fail or (openai_error if openai else native_error)
    response = fail(405, f"Only {allowed} is supported.", code="method_not_allowed")
    response["Allow"] = allowed
    return response


@dataclass(frozen=True)
class Protocol:
    """How the serving endpoints of one client protocol (OpenAI's, Anthropic's) say what is
    not an answer: an error (`fail(status, message, field=, code=, rid=, retry_after=)`), a
    request no provider answered (`failure(exc, rid)`), an Idempotency-Key retry of a request
    that did not complete (`unfinished(request, rid)`); and how a response names its request
    (`name(response, rid)`)."""

    fail: Callable[..., JsonResponse]
    failure: Callable[[services.RequestFailed, str], JsonResponse]
    unfinished: Callable[[Request, str], JsonResponse]
    name: Callable = identified


OPENAI = Protocol(fail=openai_error, failure=openai_failure, unfinished=openai_unfinished_replay)


def event_stream(body) -> StreamingHttpResponse:
    return StreamingHttpResponse(body, content_type="text/event-stream", headers=SSE_HEADERS)


async def serve(
    http_request,
    *,
    surface: str,
    protocol: Protocol = OPENAI,
    body: Callable[[Request], Awaitable[dict]],
    replay: Callable[[Request], Any] | None = None,
    stream: Callable[[services.Admitted, Any, Any], AsyncIterator[bytes]] | None = None,
    render: Callable[[Request], dict] | None = None,
):
    """A POST of a client protocol's serving endpoint, served: admitted, answered from the
    cache or an idempotent replay, else run (streamed or not), each outcome in the protocol's
    shape. `body` is a completed request's JSON answer; `replay` the events of a completed
    request asked as a stream; `stream` the events of a live one (surfaces that never stream
    leave both out). `render`, when `body` needs the database, is its sync form: a live
    answer is then rendered in the database unit that completes it, not in a hop of its own."""
    if http_request.method != "POST":
        return method_not_allowed("POST", fail=protocol.fail)
    admitted, error = await admit(http_request, openai=True, surface=surface, fail=protocol.fail)
    if error is not None:
        return error
    request = admitted.request
    rid = str(request.pk)
    streamed = bool(request.params.get("stream")) and stream is not None
    if request.status == Request.Status.COMPLETED:  # a cache hit, an idempotent retry
        if streamed:
            return protocol.name(event_stream(replay(request)), rid)
        return protocol.name(JsonResponse(await body(request)), rid)
    if admitted.replay:
        return protocol.unfinished(request, rid)
    if streamed:
        # The first event before the response starts: a request refused upstream (a provider's
        # 400, every provider busy) is answered with its status, as the provider would, not as
        # an error inside a 200 stream.
        events = services.request_run(admitted, stream=True)
        try:
            first = await events.__anext__()
        except services.RequestFailed as exc:
            return protocol.failure(exc, rid)
        live = StreamBody(stream(admitted, events, first), admitted, events)
        return protocol.name(event_stream(live), rid)
    admitted.render = render
    try:
        async for event in services.request_run(admitted, stream=False):
            request = event
    except services.RequestFailed as exc:
        return protocol.failure(exc, rid)
    answer = admitted.rendered if admitted.rendered is not None else await body(request)
    return protocol.name(JsonResponse(answer), rid)


async def protocol_stream(events, first, *, rendered, sse, failed) -> AsyncIterator[bytes]:
    """A live stream in the client's protocol, from request_run's events: relayed (each Delta's
    bytes as the provider sent them, the closing one, marked `last`, held until the answer is
    billed) or, when `rendered` is given (a translated answer), rendered by it: `start()`,
    `add(openai delta)` and `complete(answer)` each return events, which `sse` encodes.
    `failed(message)` is what ends a stream that failed after it began."""
    if rendered is not None:
        for piece in rendered.start():
            yield sse(piece)
    closing = None
    try:
        event = first
        while True:
            if isinstance(event, Delta):
                if event.last:
                    closing = event.raw
                elif event.raw is not None:
                    yield event.raw
                elif rendered is not None and event.openai:
                    for piece in rendered.add(event.openai):
                        yield sse(piece)
            elif closing is not None:
                yield closing
            elif rendered is not None:
                for piece in rendered.complete(event.answer):
                    yield sse(piece)
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                break
    except services.RequestFailed as exc:
        for piece in failed(str(exc)):
            yield sse(piece)
