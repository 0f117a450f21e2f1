"""Batch files, read and written as streams: never a whole file in memory.

Pure (no database, no network), so the upload validator of the OpenAI-compatible surface and
the flush that builds provider files share one set of rules:

- UTF-8 without a byte-order mark (one on line 1 is stripped, as OpenAI does; anywhere else it
  is an error), no NUL or lone surrogates, no blank lines inside the file;
- numbers JSON can carry, parsed by the loader every API path shares (llmops.limits): no NaN,
  Infinity, 1e999 or integer past 64 bits, the error naming the field (`body.temperature`);
- every line an object `{"custom_id", "method": "POST", "url": <endpoint>, "body": {...}}`;
- `custom_id` unique and matching `^[a-zA-Z0-9_-]{1,64}$`, the stricter of the two providers'
  rules, so any file can run on either;
- one model per file (OpenAI's rule).

Errors name the line: `line 7: custom_id 'a 1' may only contain letters, digits, _ and -`.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from llmops import fastjson, limits
from llmops.text import unstorable_text

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
BOM = b"\xef\xbb\xbf"
CHAT_ENDPOINT = "/v1/chat/completions"
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
RESPONSES_ENDPOINT = "/v1/responses"
# Anthropic Messages bodies: the lines of a /v1/messages/batches create, which llmops stores as
# a file of its own (a client may upload such a file to /v1/files too).
MESSAGES_ENDPOINT = "/v1/messages"
# The urls a batch file's lines may ask (one per file, as OpenAI requires).
ENDPOINTS = (CHAT_ENDPOINT, RESPONSES_ENDPOINT, EMBEDDINGS_ENDPOINT, MESSAGES_ENDPOINT)

# Provider limits per batch, as OpenAI and Anthropic document them: bytes (OpenAI), requests
# and bytes (Anthropic).
OPENAI_MAX_BYTES = 200 * 1024 * 1024
ANTHROPIC_MAX_REQUESTS, ANTHROPIC_MAX_BYTES = 100_000, 256 * 1024 * 1024
# A line longer than this is refused before it is parsed (one request body, not a file).
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class BatchFileError(ValueError):
    """A file that must not reach a provider; `errors` name the lines (the first few)."""

    def __init__(self, errors: list[LineError], *, truncated: bool = False) -> None:
        self.errors = errors
        self.truncated = truncated
        more = "; and more" if truncated else ""
        super().__init__("; ".join(str(e) for e in errors) + more)


@dataclass(frozen=True)
class BatchLine:
    number: int  # 1-based, as editors count
    custom_id: str
    model: str
    body: dict
    url: str = CHAT_ENDPOINT


@dataclass
class Scan:
    """What a validated file holds."""

    lines: int = 0
    bytes: int = 0
    models: set[str] = field(default_factory=set)
    urls: set[str] = field(default_factory=set)


def raw_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its newline) from a stream of byte chunks of any size.
    A final line without a newline counts; a trailing newline does not add an empty line. A
    line past MAX_LINE_BYTES ends the stream (parse_line refuses it by its size); the limit
    leaves room for the carriage return of a line of exactly MAX_LINE_BYTES whose newline is
    in the next chunk."""
    for number, line in enumerate(fastjson.lines(chunks, limit=MAX_LINE_BYTES + 1), start=1):
        yield number, line.removesuffix(b"\r")


def parse_line(number: int, raw: bytes, *, endpoint: str | None = None) -> BatchLine:
    """One input line, checked on its own (uniqueness, models and urls are the file's
    business): its url must be `endpoint`, or any of ENDPOINTS if None. Raises
    LineError-carrying BatchFileError."""

    def fail(message: str) -> BatchFileError:
        return BatchFileError([LineError(number, message)])

    if number == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    if len(raw) > MAX_LINE_BYTES:
        raise fail(f"longer than {MAX_LINE_BYTES} bytes")
    if not raw.strip():
        raise fail("empty line (a batch file has one JSON object per line, no blank lines)")
    if BOM in raw:
        raise fail("a byte-order mark inside the file (only line 1 may start with one)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 (byte {exc.start})") from None
    try:
        value = limits.loads(text)
    except limits.Refused as exc:
        raise fail(exc.message.removeprefix("The body is ").removesuffix(".")) from None
    if not isinstance(value, dict):
        raise fail("must be a JSON object")
    if (problem := unstorable_text(value)) is not None:
        raise fail(f"{problem or 'a value'} contains a NUL character or an unpaired surrogate")
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str):
        raise fail("custom_id is missing or not a string")
    if not CUSTOM_ID.fullmatch(custom_id):
        raise fail(
            f"custom_id {custom_id[:80]!r} must be 1 to 64 letters, digits, _ or - "
            "(the rule both providers accept)"
        )
    if value.get("method") != "POST":
        raise fail(f"method must be POST, got {value.get('method')!r}")
    url = value.get("url")
    if endpoint is not None and url != endpoint:
        raise fail(f"url must be {endpoint}, got {url!r}")
    if url not in ENDPOINTS:
        raise fail(f"url must be one of {', '.join(ENDPOINTS)}, got {url!r}")
    body = value.get("body")
    if not isinstance(body, dict):
        raise fail("body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise fail("body.model is missing")
    if body.get("stream"):
        raise fail("body.stream is not allowed in a batch")
    return BatchLine(number=number, custom_id=custom_id, model=model, body=body, url=url)


def scan(chunks: Iterable[bytes], *, endpoint: str | None = None, one_model: bool = True) -> Scan:
    """Validate a whole file in one streaming pass, collecting up to MAX_REPORTED_ERRORS
    line-numbered problems; raises BatchFileError listing them, else returns what it holds."""
    result = Scan()
    errors: list[LineError] = []
    seen: set[str] = set()
    first_model_line: dict[str, int] = {}
    first_url_line: dict[str, int] = {}
    truncated = False
    for number, raw in raw_lines(chunks):
        result.lines = number
        result.bytes += len(raw) + 1
        try:
            line = parse_line(number, raw, endpoint=endpoint)
        except BatchFileError as exc:
            errors.extend(exc.errors)
        else:
            if line.custom_id in seen:
                errors.append(LineError(number, f"duplicate custom_id {line.custom_id!r}"))
            seen.add(line.custom_id)
            first_model_line.setdefault(line.model, number)
            first_url_line.setdefault(line.url, number)
            result.models.add(line.model)
            result.urls.add(line.url)
        if len(errors) >= MAX_REPORTED_ERRORS:
            truncated = True
            break
    if one_model and len(first_model_line) > 1 and not truncated:
        errors.append(_second(first_model_line, "model", "one model per batch file"))
    if len(first_url_line) > 1 and not truncated:
        errors.append(_second(first_url_line, "url", "one endpoint per batch file"))
    if result.lines == 0:
        errors.append(LineError(1, "the file is empty"))
    if errors:
        raise BatchFileError(errors[:MAX_REPORTED_ERRORS], truncated=truncated)
    return result


def _second(first_line: dict[str, int], what: str, rule: str) -> LineError:
    """The error at the first line whose `what` differs from the file's first line's."""
    (first, _), (other, at) = sorted(first_line.items(), key=lambda kv: kv[1])[:2]
    return LineError(at, f"{what} {other!r} differs from {first!r} ({rule})")


def request_line(*, custom_id: str, body: dict, endpoint: str = CHAT_ENDPOINT) -> bytes:
    """One OpenAI batch input line, newline included."""
    if not CUSTOM_ID.fullmatch(custom_id):
        raise ValueError(f"custom_id {custom_id!r} does not match {CUSTOM_ID.pattern}")
    line = {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def spooled() -> BinaryIO:
    """A temporary file kept in memory up to 8 MB and on disk beyond; the caller closes it."""
    return tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)


@dataclass
class Part:
    """One provider file of a split: a temporary file (spooled to disk past 8 MB) and the
    custom_ids in it, in order."""

    file: BinaryIO
    custom_ids: list[str]
    bytes: int = 0


def split(lines: Iterable[tuple[str, bytes]], *, max_lines: int, max_bytes: int) -> Iterator[Part]:
    """Cut encoded lines (custom_id, bytes) into parts within a provider's limits, in order.
    Each part's file is rewound and ready to upload; the caller closes it."""
    part: Part | None = None
    for custom_id, encoded in lines:
        if len(encoded) > max_bytes:
            raise ValueError(f"{custom_id}: one request of {len(encoded)} bytes is over the limit")
        if part is not None and (
            len(part.custom_ids) >= max_lines or part.bytes + len(encoded) > max_bytes
        ):
            part.file.seek(0)
            yield part
            part = None
        if part is None:
            # The caller uploads and closes each part's file.
            part = Part(file=spooled(), custom_ids=[])
        part.file.write(encoded)
        part.custom_ids.append(custom_id)
        part.bytes += len(encoded)
    if part is not None:
        part.file.seek(0)
        yield part
