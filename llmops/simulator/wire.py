"""HTTP plumbing shared by both provider dialects: JSON, ids, auth, times, paced SSE."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: object) -> str:
    return _encoder.encode(value)


def dump_bytes(value: object) -> bytes:
    return _encoder.encode(value).encode()


class Ids:
    """Unique, provider-looking ids; a counter is far cheaper than random bytes per request."""

    def __init__(self) -> None:
        self._prefix = os.urandom(5).hex()
        self._counter = itertools.count(1)

    def make(self, prefix: str) -> str:
        return f"{prefix}{self._prefix}{next(self._counter):014x}"


def api_key(request: web.Request) -> str | None:
    headers = request.headers
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = (headers.get("x-api-key") or "").strip()
    return key or None


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(slots=True)
class StreamFault:
    """What to do to a stream once `after_tokens` token events went out."""

    kind: str  # "stream_cut", "stream_error" or "stall"
    after_tokens: int
    stall_s: float = 0.0


@dataclass(slots=True)
class StreamProgress:
    """How far a stream got; read in a `finally` so a vanished client is still billed."""

    events_sent: int = 0
    weights: list[int] | None = None

    @property
    def tokens_sent(self) -> int:
        if self.weights is None:
            return self.events_sent
        return sum(self.weights[: self.events_sent])


async def write_stream(
    resp: web.StreamResponse,
    request: web.Request,
    progress: StreamProgress,
    *,
    head: bytes,
    events: list[bytes],
    tail: bytes,
    error_event: bytes,
    tokens_per_s: float,
    fault: StreamFault | None,
) -> bool:
    """Write `head`, then the token `events` paced at `tokens_per_s`, then `tail`.

    Returns whether the stream finished normally. A client that goes away ends
    the stream quietly; `progress` says what it received.
    """
    total = len(events)
    fault_at = total + 1
    if fault is not None and fault.after_tokens <= total:
        fault_at = fault.after_tokens
    started = time.monotonic()
    pending = [head]
    sent = 0
    try:
        while True:
            limit = min(total, fault_at)
            if tokens_per_s > 0:
                due = int((time.monotonic() - started) * tokens_per_s) + 1
                limit = min(limit, max(due, sent + 1))
            if limit > sent:
                pending.extend(events[sent:limit])
                sent = limit
            if sent == fault_at and fault is not None:
                if pending:
                    await resp.write(b"".join(pending))
                    pending = []
                progress.events_sent = sent
                if fault.kind == "stall":
                    await asyncio.sleep(fault.stall_s)
                    started += fault.stall_s
                    fault_at = total + 1
                    continue
                if fault.kind == "stream_error":
                    await resp.write(error_event)
                    await resp.write_eof()
                else:
                    # No terminator and no final chunk: the client sees a broken body.
                    transport = request.transport
                    if transport is not None:
                        transport.close()
                return False
            if sent >= total:
                pending.append(tail)
                await resp.write(b"".join(pending))
                progress.events_sent = sent
                await resp.write_eof()
                return True
            if pending:
                await resp.write(b"".join(pending))
                pending = []
                progress.events_sent = sent
            delay = started + sent / tokens_per_s - time.monotonic()
            if delay > 0.0005:
                await asyncio.sleep(delay)
    except ConnectionError:
        return False


async def serve_stream(
    request: web.Request,
    *,
    headers: dict[str, str],
    weights: list[int] | None,
    fault: Any,
    head: bytes,
    events: list[bytes],
    tail: bytes,
    error_event: bytes,
    tokens_per_s: float,
    bill: Callable[[int], None],
) -> tuple[web.StreamResponse, bool]:
    """An SSE response written by write_stream with the injected `fault` (a state fault, or
    None), billed in a `finally` for the tokens the client got (`bill(tokens_sent)`), so a
    vanished client is still billed. Returns (the response, whether it finished normally)."""
    resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    await resp.prepare(request)
    progress = StreamProgress(weights=weights)
    stream_fault = None
    if fault is not None:
        stream_fault = StreamFault(fault.kind, fault.after_tokens, fault.stall_s)
    finished = False
    try:
        finished = await write_stream(
            resp,
            request,
            progress,
            head=head,
            events=events,
            tail=tail,
            error_event=error_event,
            tokens_per_s=tokens_per_s,
            fault=stream_fault,
        )
    finally:
        bill(progress.tokens_sent)
    return resp, finished


def page_window(
    ids: list[str], after: str | None, before: str | None, limit: int
) -> tuple[int, int, bool]:
    """[start, end) of the page next to a cursor id, and whether more lie beyond it.

    `after` pages towards the end of the list, `before` towards its start; an
    unknown cursor gives an empty last page, so SDK auto-pagination stops.
    """
    cursor = after or before
    if not cursor:
        end = min(limit, len(ids))
        return 0, end, end < len(ids)
    try:
        position = ids.index(cursor)
    except ValueError:
        return 0, 0, False
    if after:
        start = position + 1
        end = min(start + limit, len(ids))
        return start, end, end < len(ids)
    start = max(0, position - limit)
    return start, position, start > 0


def sse_data(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


def sse_event(name: str, payload: str) -> bytes:
    return f"event: {name}\ndata: {payload}\n\n".encode()


async def pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)
