"""Traces of labelled requests (llmops/data/README.md): reading and checking them, line by line,
for the savings replay (routing.replay) and the demo history (llmops.history)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from billing.pricing import MAX_TOKENS_PER_RECORD
from routing.models import LatencyClass
from routing.router import TIERS

# --- the trace ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceRow:
    """One line of a trace (llmops/data/README.md)."""

    id: str
    t: float  # seconds since the start of the trace
    workload: str
    latency_class: str
    deadline_s: float  # seconds after arrival by which the answer must exist
    tier: str
    system_prompt_id: str
    prompt_id: str
    input_tokens: int
    max_tokens: int
    output_tokens: int


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the line."""


_TEXT_FIELDS = ("id", "workload", "system_prompt_id", "prompt_id")
_CHOICES = {"latency_class": tuple(LatencyClass.values), "tier": TIERS}
# (field, smallest value allowed)
_TOKEN_FIELDS = (("input_tokens", 0), ("max_tokens", 1), ("output_tokens", 0))
_FIELDS = tuple(TraceRow.__dataclass_fields__)
# About 31 years: any real trace, and far below what a datetime can add.
MAX_SECONDS = 10**9


def trace_read(path: Path) -> Iterator[TraceRow]:
    """The rows of a trace file (JSON lines, gzip or plain), checked one by one: a TraceError
    names the line of the first problem. Streams: a long trace is never all in memory."""
    try:
        with path.open("rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            yield from _rows(gzip.GzipFile(fileobj=raw) if gzipped else raw)
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _rows(lines: BinaryIO) -> Iterator[TraceRow]:
    previous_t = 0.0
    ids: set[str] = set()
    number = 0
    while True:
        try:
            line = lines.readline()
        except (OSError, EOFError) as exc:
            raise TraceError(f"line {number + 1}: the file is damaged ({exc})") from None
        if not line:
            return
        number += 1
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except UnicodeDecodeError:
            raise TraceError(f"line {number}: not UTF-8") from None
        except ValueError as exc:
            raise TraceError(f"line {number}: not JSON ({exc})") from None
        row = _row(data, number)
        if row.t < previous_t:
            raise TraceError(
                f"line {number}: t {row.t} is before the previous line's {previous_t} "
                "(a trace is sorted by t)"
            )
        if row.id in ids:
            raise TraceError(f"line {number}: id {row.id!r} appears twice")
        ids.add(row.id)
        previous_t = row.t
        yield row


def _row(data: Any, number: int) -> TraceRow:
    if not isinstance(data, dict):
        raise TraceError(f"line {number}: not a JSON object")
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        raise TraceError(f"line {number}: missing {', '.join(missing)}")
    if isinstance(data["id"], int) and not isinstance(data["id"], bool):
        data = {**data, "id": str(data["id"])}
    for name in _TEXT_FIELDS:
        if not isinstance(data[name], str) or not data[name]:
            raise TraceError(f"line {number}: {name} must be a non-empty string")
    for name, choices in _CHOICES.items():
        if data[name] not in choices:
            raise TraceError(
                f"line {number}: unknown {name} {data[name]!r} (one of {', '.join(choices)})"
            )
    t, deadline = data["t"], data["deadline_s"]
    if not _is_number(t) or not 0 <= t <= MAX_SECONDS:
        raise TraceError(f"line {number}: t must be a number of seconds from 0 to {MAX_SECONDS}")
    if not _is_number(deadline) or not 0 < deadline <= MAX_SECONDS:
        raise TraceError(
            f"line {number}: deadline_s must be a positive number of seconds up to {MAX_SECONDS}"
        )
    for name, smallest in _TOKEN_FIELDS:
        value = data[name]
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not smallest <= value <= MAX_TOKENS_PER_RECORD
        ):
            raise TraceError(
                f"line {number}: {name} must be a whole number from {smallest} to "
                f"{MAX_TOKENS_PER_RECORD}"
            )
    if data["output_tokens"] > data["max_tokens"]:
        raise TraceError(
            f"line {number}: output_tokens {data['output_tokens']} is above max_tokens "
            f"{data['max_tokens']}"
        )
    return TraceRow(**{name: data[name] for name in _FIELDS})


def _is_number(value: Any) -> bool:
    # json.loads reads NaN and Infinity; no comparison below lets them through.
    return isinstance(value, int | float) and not isinstance(value, bool)
