"""json.loads, answered by orjson where orjson gives the same value, and by json.loads itself
where it might not: the same values, the same errors, several times faster on the JSON llmops
reads most (a batch's result lines, a client batch's request lines, every stored JSON column
read back by llmops.rows; bench/batch_pipeline.py: a tenth of a 50,000-result ingest).

orjson differs from json.loads in two ways, both sent to json.loads here:
- it refuses what json.loads reads (NaN, Infinity, 1e999, lone surrogates, UTF-16 bytes,
  nesting past 1,024 levels): any orjson error is retried by json.loads, which reads it or
  raises its own error;
- it reads an integer past 64 bits as a float, silently (json.loads: the exact int), and one
  between 2**63 and 2**64 as an int llmops.limits must refuse: text with a run of 19 or more
  digits anywhere (a string's included: a cheap, conservative test) is read by json.loads;
otherwise they agree: the same floats (correctly rounded, checked against json.loads on random
doubles in tests/llmops/test_fastjson.py), the last of a repeated key, the keys' order.

A provider's answers (realtime bodies, streamed events, batch result lines) are read by
stored_loads, which also names a NaN or infinity in the value: no JSON column or client can
take one. dumps writes JSON text by orjson where it can (a batch's answers, to their column).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

# Every ASCII digit as b"9", every other byte as a space: a run of 19 digits is then a plain
# substring search, a few times faster than the regular expression [0-9]{19} (which cost
# more than orjson's whole parse of a result line).
_DIGITS_AS_NINES = bytes(0x39 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_NINETEEN_DIGITS = b"9" * 19


def loads(text: str | bytes | bytearray) -> Any:
    """json.loads(text), the same value or the same error."""
    done, value = fast(text)
    return value if done else json.loads(text)


def dumps(value: Any) -> str:
    """json.dumps(value)'s JSON text by orjson where orjson can write it, several times
    faster (a batch chunk's thousands of answers written to their JSON column): the same
    value, read back, in other text (no spaces after separators, non-ASCII characters as they
    are, not as \\u escapes). What orjson refuses (keys that are not strings, integers past 64
    bits) goes to json.dumps. Not for values that may hold NaN or infinity: orjson writes them
    as null, json.dumps as NaN (which no JSON reader takes); answers read by stored_loads hold
    none."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def lines(chunks: Iterable[bytes], *, limit: int | None = None) -> Iterator[bytes]:
    """The lines of JSON Lines arriving as byte chunks of any size, without their newlines (a
    final line without one counts). A JSON text holds no raw newline, so each is one value; a
    carriage return before it is whitespace to the parser. (httpx's iter_lines decodes the
    text and looks for three kinds of line end, at several times the cost per line.)
    With a `limit`, a line found longer than it is yielded as far as it was read, and nothing
    after it: the caller refuses it by its size, without the whole of it in memory."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete
        if limit is not None and len(pending) > limit:
            yield pending
            return
    if pending:
        yield pending


def stored_loads(text: str | bytes | bytearray) -> tuple[Any, str]:
    """json.loads(text) for a value that will be kept in a JSON column or passed on as JSON,
    and the first number in it that neither can carry, as JSON text would spell it ("NaN",
    "Infinity", "-Infinity"; 1e999 reads as Infinity), "" if none. json.loads reads them and
    json.dumps writes them back, but they are no JSON: PostgreSQL refuses the text, and so
    would a client's parser. orjson refuses them all, so only text it could not read is
    searched."""
    done, value = fast(text)
    if done:
        return value, ""
    value = json.loads(text)
    return value, not_finite(value)


def stored_line_loads(raw: bytes) -> tuple[Any, str]:
    """stored_loads of one JSON line; bytes that are no UTF-8 read as a text decoder with
    errors="replace" (httpx's) would have given them to it."""
    try:
        return stored_loads(raw)
    except ValueError:
        return stored_loads(raw.decode("utf-8", "replace"))


def not_finite(value: Any) -> str:
    """The first NaN or infinity in `value` (dicts and lists walked), as JSON text would spell
    it; "" if none."""
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is float and not math.isfinite(item):
            return json.dumps(item)
        if isinstance(item, dict):
            pending.extend(reversed(item.values()))
        elif isinstance(item, list):
            pending.extend(reversed(item))
    return ""


def fast(text: str | bytes | bytearray) -> tuple[bool, Any]:
    """(True, the value) when orjson reads `text` as json.loads would; (False, None) when only
    json.loads can say (for a caller with its own json.loads, e.g. llmops.limits' hooks)."""
    if _has_long_digits(text):
        return False, None
    try:
        return True, orjson.loads(text)
    except orjson.JSONDecodeError:
        return False, None


def _has_long_digits(text: str | bytes | bytearray) -> bool:
    if isinstance(text, str):
        # (a lone surrogate encoded as it is: orjson refuses the text, json.loads decides)
        text = text.encode("utf-8", "surrogatepass")
    return _NINETEEN_DIGITS in text.translate(_DIGITS_AS_NINES)
