"""The ledger CSV export streams: 100,000 entries go out with the memory of a few pages."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connection
from django.test import AsyncClient

from billing.fields import to_units
from billing.models import LedgerEntry, Price

pytestmark = pytest.mark.django_db

SMALL, TOTAL = 10_000, 100_000


def fill(demo, count: int, day, start: int) -> None:
    """`count` plain charges at `day`, generated inside the database (this tests the export,
    not how entries are made: ledger_record_usage would take minutes for 100,000). One
    timestamp for all: the export's keyset must then page by id alone."""
    model = demo.models["gpt-4o-mini"]
    price = Price.objects.filter(model=model, processing="standard").first()
    cost = to_units(Decimal("0.000270000001"))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT %s UNION ALL SELECT i + 1 FROM n WHERE i < %s)
            INSERT INTO billing_ledgerentry (
                idempotency_key, kind, mode, team_id, workload_id, model_id, input_tokens,
                cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
                price_id, cost_usd, counterfactual_price_id, counterfactual_cost_usd,
                standard_cost_usd, batch_cost_usd, occurred_at, note)
            SELECT 'csv:' || i, 'charge', 'realtime', %s, %s, %s, 1000 + i, 0, 0, 200, 0,
                %s, %s, %s, %s, %s, %s, %s, CASE WHEN i = 7 THEN '=HYPERLINK(evil)' ELSE '' END
            FROM n
            """,
            [
                start,
                start + count - 1,
                demo.acme.pk,
                demo.workloads["product-search"].pk,
                model.pk,
                price.pk,
                cost,
                price.pk,
                cost,
                cost,
                cost // 2,
                connection.ops.adapt_datetimefield_value(day),
            ],
        )
    assert LedgerEntry.objects.filter(occurred_at=day).count() == count


def export(user, params) -> tuple[int, int, int, bytes]:
    """(rows, bytes, peak traced memory while streaming, first chunk) of one CSV download,
    reading the stream chunk by chunk and keeping none of it."""

    async def run():
        client = AsyncClient()
        await client.aforce_login(user)
        tracemalloc.start()
        try:
            response = await client.get("/api/v1/reports/ledger.csv", params)
            assert response.status_code == 200
            assert response.streaming
            lines = size = 0
            head = b""
            async for chunk in response.streaming_content:
                head = head or chunk
                size += len(chunk)
                lines += chunk.count(b"\n")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return lines - 1, size, peak, head

    return async_to_sync(run)()


def test_csv_export_of_100000_entries_streams_with_flat_memory(demo):
    day = demo.at.replace(hour=0, minute=0, second=0, microsecond=0)
    fill(demo, SMALL, day - timedelta(hours=12), 0)
    fill(demo, TOTAL - SMALL, day + timedelta(hours=12), SMALL)
    user = User.objects.create_user("finance", is_staff=True)
    first_day = {
        "since": (day - timedelta(days=1)).date(),
        "until": (day - timedelta(days=1)).date(),
    }
    both_days = {"since": (day - timedelta(days=1)).date(), "until": day.date()}

    export(user, first_day)  # warm up: imports and caches are not what is measured
    small_rows, small_size, small_peak, _ = export(user, first_day)
    rows, size, peak, _ = export(user, both_days)

    assert (small_rows, rows) == (SMALL, TOTAL)
    # Ten times the rows, about the same memory: a few pages of 2,000 rows, never the file.
    assert size > 10 * small_size * 0.9
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
    assert peak < 1.5 * small_peak + 1024 * 1024
    assert peak < size / 3


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(demo):
    day = demo.at.replace(hour=0, minute=0, second=0, microsecond=0)
    fill(demo, 10, day, 0)
    user = User.objects.create_user("finance", is_staff=True)

    async def body():
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.get("/api/v1/reports/ledger.csv", {"since": day.date()})
        return b"".join([c async for c in response.streaming_content]).decode()

    text = async_to_sync(body)()
    assert "'=HYPERLINK(evil)" in text
    assert ",=HYPERLINK" not in text
