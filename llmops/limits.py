"""What every API path refuses before anything is written, in one place: bodies past
LLMOPS_MAX_BODY_BYTES, numbers no database or client can round-trip (NaN, Infinity, 1e999,
integers past 64 bits), metadata past LLMOPS_MAX_METADATA_CHARS or LLMOPS_MAX_METADATA_DEPTH,
and client-named headers past LLMOPS_MAX_KEY_HEADER_CHARS.

The serving fast path (routing/asks.py), DRF's views (StrictJSONParser, installed by
llmops/urls.py) and batch files (batches/jsonl.py) all parse JSON with `loads`; each answers a
`Refused` in its caller's error shape. Pure: no database.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser

from llmops import fastjson

# Headers whose value a client chooses and llmops stores or looks up by. X-Request-Id is not
# read today but proxies and SDKs forward it, and a log line would carry it.
KEY_HEADERS = ("Idempotency-Key", "X-Request-Id", "X-Workload")
# A JSON integer must fit the databases' 64-bit integers (PostgreSQL's bigint, SQLite's
# INTEGER): Python would parse 10**400 and fail later, at the INSERT, as a 500.
MAX_INT = 2**63 - 1


class Refused(ValueError):
    """A body or header refused: an HTTP status, a message and the field (or header) at fault."""

    def __init__(self, status: int, message: str, *, field: str = "", code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code or "invalid_request"


class _NotFinite:
    """A number parsed as a placeholder so that the walk below can name where it was."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def loads(raw: bytes | str) -> Any:
    """JSON as RFC 8259 has it: no NaN or Infinity, no float that overflows to infinity (1e999),
    no integer past 64 bits. Raises Refused (400) naming the field, e.g. `metadata.a`."""
    # orjson refuses what is refused here but for integers past 64 bits, which fastjson leaves to
    # json.loads: what it reads is what the hooks below would let through, several times
    # faster (a 50,000-line batch file is parsed line by line).
    done, value = fastjson.fast(raw)
    if done:
        return value
    bad: list[_NotFinite] = []

    def constant(text: str) -> _NotFinite:
        bad.append(_NotFinite(text))
        return bad[-1]

    def number(text: str):
        value = float(text)
        return value if math.isfinite(value) else constant(text)

    def integer(text: str):
        value = int(text)
        return value if -MAX_INT - 1 <= value <= MAX_INT else constant(text)

    try:
        value = json.loads(raw, parse_constant=constant, parse_float=number, parse_int=integer)
    except RecursionError:
        raise Refused(400, "The body is nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError, a non-UTF-8 body, int's 4,300-digit limit
        raise Refused(400, f"The body is not valid JSON: {exc}.") from None
    if bad:
        path = _path_of(value, bad[0]) or ""
        raise Refused(
            400,
            f"{path or 'body'}: {bad[0].text[:40]} is not a finite number JSON can carry.",
            field=path,
        )
    return value


def _path_of(value: Any, target: _NotFinite, path: str = "") -> str | None:
    if value is target:
        return path
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _path_of(item, target, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def check_metadata(value: Any, *, field: str = "metadata") -> None:
    """Refuse metadata past the shared size and depth limits (it is stored with every request
    and shown back on every read)."""
    if value is None:
        return
    if _depth(value) > settings.LLMOPS_MAX_METADATA_DEPTH:
        raise Refused(
            400,
            f"{field}: nested deeper than {settings.LLMOPS_MAX_METADATA_DEPTH} levels.",
            field=field,
        )
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    if size > settings.LLMOPS_MAX_METADATA_CHARS:
        raise Refused(
            400,
            f"{field}: {size} characters of JSON, at most {settings.LLMOPS_MAX_METADATA_CHARS}.",
            field=field,
        )


def _depth(value: Any) -> int:
    # Iterative: a body nested 10,000 deep must not blow the stack here either.
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def check_headers(request) -> None:
    """Refuse a client-named header longer than LLMOPS_MAX_KEY_HEADER_CHARS (400 naming it)."""
    limit = settings.LLMOPS_MAX_KEY_HEADER_CHARS
    for name in KEY_HEADERS:
        if len(request.headers.get(name) or "") > limit:
            raise Refused(400, f"The {name} header is over {limit} characters.", field=name)


def check_body_size(request, *, limit: int | None = None) -> None:
    """Refuse (413) a body the client declares larger than `limit` (a view's own, else
    LLMOPS_MAX_BODY_BYTES), before it is read. A multipart upload (/v1/files) has its own,
    larger cap: its file parts stream to disk and Django caps its other parts."""
    if request.content_type == "multipart/form-data":
        return
    limit = limit or settings.LLMOPS_MAX_BODY_BYTES
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > limit:
        raise Refused(413, f"The body is over {limit} bytes.", code="too_large")


def body_too_large() -> Refused:
    return Refused(
        413, f"The body is over {settings.LLMOPS_MAX_BODY_BYTES} bytes.", code="too_large"
    )


class StrictJSONParser(JSONParser):
    """DRF's JSONParser through `loads`: a refusal is a ValidationError naming the field, so
    each API answers it in its own shape (400)."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            return loads(raw)
        except Refused as exc:
            field = exc.field or "body"
            raise ValidationError({field: [exc.message.removeprefix(f"{field}: ")]}) from None
