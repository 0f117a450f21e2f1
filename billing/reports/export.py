"""The ledger as CSV, streamed one keyset page at a time."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Q

from billing.models import LedgerEntry
from billing.pricing import plain
from billing.reports.scope import Scope, entries_for

CSV_PAGE_SIZE = 2000
CSV_COLUMNS = [
    "id",
    "occurred_at",
    "kind",
    "mode",
    "team",
    "workload",
    "request",
    "provider",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "price_version",
    "cost_usd",
    "counterfactual_cost_usd",
    "standard_cost_usd",
    "batch_cost_usd",
    "flex_cost_usd",
    "note",
]
_CSV_VALUES = [
    "id",
    "occurred_at",
    "kind",
    "mode",
    "team__slug",
    "workload__slug",
    "request_id",
    "model__provider__slug",
    "model__model_id",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "price_id",
    "cost_usd",
    "counterfactual_cost_usd",
    "standard_cost_usd",
    "batch_cost_usd",
    "flex_cost_usd",
    "note",
]


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet would run it as a formula
    return value


def ledger_csv_page(
    scope: Scope, *, last_id: int, after: tuple[datetime, int] | None
) -> tuple[str, tuple[datetime, int] | None]:
    """One page of CSV rows after the keyset `after` (newest first), and the next keyset (None
    at the end). Entries appended after the export started (id above `last_id`) are left
    out, so the file is one consistent cut of an append-only ledger."""
    entries = entries_for(scope).filter(id__lte=last_id)
    if after is not None:
        at, pk = after
        entries = entries.filter(Q(occurred_at__lt=at) | Q(occurred_at=at, id__lt=pk))
    rows = list(entries.order_by("-occurred_at", "-id").values_list(*_CSV_VALUES)[:CSV_PAGE_SIZE])
    if not rows:
        return "", None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    last = rows[-1]
    return out.getvalue(), ((last[1], last[0]) if len(rows) == CSV_PAGE_SIZE else None)


async def ledger_csv_stream(scope: Scope) -> AsyncIterator[str]:
    """The filtered ledger as CSV, one page at a time: memory stays flat whatever the size.
    Async, because under ASGI Django would first read a sync iterator into a list."""
    yield ",".join(CSV_COLUMNS) + "\n"
    last_id = await sync_to_async(_last_ledger_id)()
    after = None
    while True:
        text, after = await sync_to_async(ledger_csv_page)(scope, last_id=last_id, after=after)
        if text:
            yield text
        if after is None:
            return


def _last_ledger_id() -> int:
    return LedgerEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
