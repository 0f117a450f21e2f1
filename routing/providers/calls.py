"""What both wire protocols share: SDK clients per event loop, error classification, and
the first-byte and total deadlines of a streamed call."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2

from llmops import fastjson, outbound
from llmops.netstream import MovingDeadline
from routing.protocols import openai_chat
from routing.providers.errors import ProviderError, from_status, stream_cut
from routing.providers.types import Delta, Endpoint

# An httpx client is bound to the event loop that created it, and building one costs a TLS
# context: keep one per (loop, endpoint), dropped with its loop.
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def client_for(endpoint: Endpoint, build: Callable[[Endpoint], Any]) -> Any:
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    # `build` too: one endpoint may have an SDK client and a plain HTTP one (the relays).
    key = (build, endpoint.kind, endpoint.base_url, endpoint.api_key, endpoint.timeouts)
    if key not in per_loop:
        per_loop[key] = build(endpoint)
    return per_loop[key]


def classify(
    exc: BaseException, sdk: Any, label: str, *, after_first_byte: bool, opened: bool = False
) -> ProviderError:
    """One ProviderError for any failure of an SDK call (`sdk`: the openai or anthropic module).
    `opened`: a stream's 200 had arrived, so the provider had taken the call on."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, sdk.APIStatusError):
        body = exc.body
        if sdk.__name__ == "openai" and isinstance(body, dict) and "error" not in body:
            body = {"error": body}  # the openai SDK keeps only the envelope's inside
        error = from_status(
            f"{label} error {exc.status_code}: {exc.message}",
            exc.status_code,
            body=body,
            headers=exc.response.headers,
        )
    # httpx's own errors too: the OpenAI chat relay calls the HTTP API without the SDK.
    elif isinstance(exc, sdk.APITimeoutError | httpx2.TimeoutException | TimeoutError):
        # The request was sent: the provider may be generating (and billing) it.
        error = ProviderError(
            f"{label} timed out", retryable=True, maybe_billed=True, kind="timeout_total"
        )
    # Once a stream's 200 has arrived the provider has taken the call on and may bill its
    # prompt: a broken connection after that is a cut stream (below), not a refused connect.
    elif (
        isinstance(exc, sdk.APIConnectionError | httpx2.ConnectError)
        and not after_first_byte
        and not opened
    ):
        error = ProviderError(
            f"cannot connect to {label}: {exc}",
            retryable=True,
            maybe_billed=False,
            kind="connection",
        )
    elif isinstance(exc, sdk.APIConnectionError | httpx2.HTTPError | sdk.APIError):
        # A stream broken mid-way (the SDKs do not always wrap the transport's error).
        error = stream_cut(f"{label} stream cut: {exc}", after_first_byte=after_first_byte)
    else:
        error = ProviderError(f"{label} client error: {exc!r}", retryable=False, maybe_billed=False)
    error.after_first_byte = after_first_byte
    if after_first_byte:
        error.maybe_billed = True
    return error


@contextmanager
def sdk_errors(sdk: Any, base: type[Exception], label: str) -> Iterator[None]:
    """Any `base` error of an SDK call made inside (nothing was streamed yet) as one
    ProviderError."""
    try:
        yield
    except base as exc:
        raise classify(exc, sdk, label, after_first_byte=False) from exc


async def open_stream(coro, *, first_byte: float, label: str):
    """Await a stream's opening (a server may hold its headers until the first token)."""
    try:
        return await asyncio.wait_for(coro, timeout=first_byte)
    except TimeoutError:
        raise ProviderError(
            f"{label}: timeout first byte",
            retryable=True,
            maybe_billed=False,
            kind="timeout_first_byte",
        ) from None


class _Watchdog:
    """A stream's deadlines as one MovingDeadline for all its reads, not asyncio.timeout around
    each (a Timeout, a heap push and a cancel per relayed event). It cancels the task only
    while the task awaits a read (never in the consumer's code between reads), and a read's
    end takes its cancellation back, as asyncio.timeout does."""

    __slots__ = ("cancelling", "deadline", "expired", "task")

    def __init__(self) -> None:
        self.task = asyncio.current_task()
        # Cancellations asked before ours (by anyone else): ours is not theirs to keep.
        self.cancelling = self.task.cancelling()
        self.expired = False
        self.deadline = MovingDeadline(asyncio.get_running_loop(), self._expire)

    def _expire(self) -> None:
        self.expired = True
        self.task.cancel()

    def read_done(self) -> bool:
        """The read ended: whether it timed out, i.e. this timer cancelled it and nobody else
        asked to since (their cancellation stays a cancellation)."""
        self.deadline.stop()
        if not self.expired:
            return False
        self.expired = False
        return self.task.uncancel() <= self.cancelling


async def with_deadlines(
    events: AsyncIterator, *, first_byte: float, total: float, label: str
) -> AsyncIterator:
    """Yield `events`, failing if the first takes over `first_byte` seconds, any later gap over
    the same (a stall), or the whole over `total`."""
    loop = asyncio.get_running_loop()
    watchdog = _Watchdog()
    deadline = loop.time() + total
    iterator = events.__aiter__()
    first = True
    try:
        while True:
            watchdog.deadline.start(min(loop.time() + first_byte, deadline))
            try:
                event = await iterator.__anext__()
            except BaseException as exc:
                timed_out = watchdog.read_done()
                if isinstance(exc, StopAsyncIteration):
                    return
                if not (timed_out and isinstance(exc, asyncio.CancelledError)):
                    raise
                kind = (
                    "timeout_total"
                    if deadline <= loop.time() + 0.001
                    else ("timeout_first_byte" if first else "stream_stalled")
                )
                # Before the first byte we drop the connection having received nothing: we
                # treat it as unbilled so a slow provider can be fallen back from (the simulator
                # agrees).
                raise ProviderError(
                    f"{label}: {kind.replace('_', ' ')}",
                    retryable=True,
                    maybe_billed=not first,
                    after_first_byte=not first,
                    kind=kind,
                ) from None
            watchdog.read_done()
            first = False
            yield event
    finally:
        watchdog.deadline.close()


# --- relays --------------------------------------------------------------------------------
# Same protocol: the body goes up as the client sent it and the answer comes back as the
# provider sent it (every field, every SSE event, byte for byte), with the usage read from it.
# Plain HTTP rather than the SDKs' typed objects, which would drop unknown fields and cost a
# parse and re-encode per event.


def http_client(endpoint: Endpoint) -> httpx2.AsyncClient:
    """A relay's HTTP client (use through client_for: one per loop and endpoint)."""
    client = outbound.async_http_client()
    client.timeout = httpx2.Timeout(endpoint.timeouts.total, connect=endpoint.timeouts.connect)
    return client


async def refused(response: httpx2.Response, label: str) -> ProviderError:
    """A non-2xx answer as a ProviderError carrying the provider's error object (OpenAI's
    {"error": {...}} or Anthropic's {"type": "error", "error": {...}})."""
    raw = await response.aread()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    message = (
        error.get("message") if isinstance(error, dict) else raw[:200].decode(errors="replace")
    )
    return from_status(
        f"{label} error {response.status_code}: {message}",
        response.status_code,
        body=body if isinstance(error, dict) else None,
        headers=response.headers,
    )


async def post_json(
    endpoint: Endpoint, url: str, body: dict, *, headers: dict, sdk: Any, label: str
) -> Any:
    """POST a body and read the JSON answer (a non-2xx as the provider's ProviderError)."""
    client = client_for(endpoint, http_client)
    try:
        response = await client.post(url, json=body, headers=headers)
        if response.status_code >= 300:
            raise await refused(response, label)
        answer, unstorable = fastjson.stored_loads(response.content)  # as response.json()
    except (httpx2.HTTPError, TimeoutError, ValueError) as exc:
        raise classify(exc, sdk, label, after_first_byte=False) from exc
    if unstorable:
        raise _unstorable(label, unstorable, after_first_byte=False)
    return answer


def _unstorable(label: str, number: str, *, after_first_byte: bool) -> ProviderError:
    """An answer (or a streamed event of one) holding `number` (NaN, Infinity): neither kept
    (PostgreSQL refuses the row) nor passed on (the client's parser would refuse it), nor
    changed. The provider answered, so it may have billed; mid-stream it is a cut stream."""
    return ProviderError(
        f"{label} answered with {number}, which is not a number JSON can carry",
        retryable=False,
        maybe_billed=True,
        after_first_byte=after_first_byte,
        kind="bad_answer",
    )


class Relay:
    """A relayed stream: each event's bytes and JSON object (`[DONE]` and anything not an
    object skipped) handed to `take`, which folds it and returns the Delta to pass on (None to
    keep it back). Any failure, take's own included, comes out as a ProviderError: after its
    first byte once `produced` (take's to set when the client has had output), so that it is
    a cut stream, never fallen back from. Use it under `aclosing`, so that a consumer leaving
    closes the upstream response at once."""

    def __init__(
        self, endpoint: Endpoint, url: str, body: dict, *, headers: dict, sdk: Any, label: str
    ) -> None:
        self.endpoint, self.url, self.body, self.headers = endpoint, url, body, headers
        self.sdk, self.label = sdk, label
        self.produced = False

    async def deltas(self, take) -> AsyncIterator[Delta]:
        client = client_for(self.endpoint, http_client)
        t, label = self.endpoint.timeouts, self.label
        opened = False
        try:
            response = await open_stream(
                client.send(
                    client.build_request("POST", self.url, json=self.body, headers=self.headers),
                    stream=True,
                ),
                first_byte=t.first_byte,
                label=label,
            )
            opened = True
            try:
                if response.status_code >= 300:
                    raise await refused(response, label)
                buffer = b""
                async for data in with_deadlines(
                    response.aiter_raw(), first_byte=t.first_byte, total=t.total, label=label
                ):
                    events, buffer = openai_chat.sse_events(buffer + data)
                    for event in events:
                        # [DONE]: the view ends a chat stream itself, after billing.
                        payload, unstorable = openai_chat.chunk_of(
                            openai_chat.sse_data(event) or "[DONE]"
                        )
                        if unstorable:
                            raise _unstorable(label, unstorable, after_first_byte=self.produced)
                        if payload is not None and (delta := take(event, payload)) is not None:
                            yield delta
            finally:
                await response.aclose()
        except Exception as exc:
            raise classify(
                exc, self.sdk, label, after_first_byte=self.produced, opened=opened
            ) from exc
