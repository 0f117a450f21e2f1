"""Billing reports: /api/v1/reports/* and the /billing/ pages, against figures computed here by
hand from the price table and summed in Python entry by entry."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from billing.models import LedgerEntry, Price
from billing.pricing import Usage
from billing.reports import RANGE_PRESETS, preset_bounds
from billing.services import ledger_record_usage, ledger_reverse
from routing.models import Mode, Request

pytestmark = pytest.mark.django_db

MILLION = Decimal(1_000_000)
USAGE = Usage(input_tokens=1_000, output_tokens=200)


def by_hand(demo, model: str, processing: str, usage: Usage = USAGE) -> Decimal:
    """Dollars for `usage` from the Price row in force, written out (no pricing code)."""
    price = (
        Price.objects.filter(
            model=demo.models[model], processing=processing, effective_from__lte=demo.at
        )
        .order_by("-effective_from")
        .first()
    )
    return (
        usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok
    ) / MILLION


def record(demo, key, *, workload, model, mode, missed=False, usage=USAGE, at=None):
    w = demo.workloads[workload]
    request = Request.objects.create(
        team=w.team,
        workload=w,
        mode=mode,
        status=Request.Status.COMPLETED,
        missed_saving=missed,
        created_at=at or demo.at,
    )
    entry, _ = ledger_record_usage(
        key=key,
        team=w.team,
        workload=w,
        request=request,
        model=demo.models[model],
        mode=mode,
        usage=usage,
        at=at or demo.at,
    )
    return entry


@pytest.fixture
def traffic(demo):
    """acme: product-search (primary gpt-4o-mini) realtime, a cache hit, a fallback to
    claude-haiku-4-5; review-moderation batched, and served now as a missed saving, one
    charge reversed. globex: dashboard-qa realtime on gpt-4o."""
    entries = {
        "realtime": record(
            demo, "rt", workload="product-search", model="gpt-4o-mini", mode=Mode.REALTIME
        ),
        "cache": record(
            demo, "cache", workload="product-search", model="gpt-4o-mini", mode=Mode.CACHE
        ),
        "fallback": record(
            demo, "fb", workload="product-search", model="claude-haiku-4-5", mode=Mode.STREAM
        ),
        "batch": record(
            demo, "b", workload="review-moderation", model="gpt-4o-mini", mode=Mode.BATCH
        ),
        "missed": record(
            demo,
            "m",
            workload="review-moderation",
            model="gpt-4o-mini",
            mode=Mode.REALTIME,
            missed=True,
        ),
        "reversed": record(
            demo, "x", workload="review-moderation", model="gpt-4o-mini", mode=Mode.BATCH
        ),
        "globex": record(demo, "g", workload="dashboard-qa", model="gpt-4o", mode=Mode.REALTIME),
    }
    ledger_reverse(entry=entries["reversed"], reason="test: refunded")
    return entries


def day_range(demo) -> dict[str, str]:
    day = demo.at.date()
    return {"since": (day - timedelta(days=1)).isoformat(), "until": day.isoformat()}


@pytest.fixture
def staff(db) -> APIClient:
    client = APIClient()
    client.force_login(User.objects.create_user("ops", is_staff=True))
    return client


@pytest.fixture
def member(demo) -> APIClient:
    user = User.objects.create_user("lead")
    demo.acme.members.add(user)
    client = APIClient()
    client.force_login(user)
    return client


def usd(value) -> Decimal:
    return Decimal(value)


def test_ledger_entries_keep_the_standard_and_batch_price_of_their_own_usage(demo, traffic):
    mini_std = by_hand(demo, "gpt-4o-mini", "standard")
    mini_batch = by_hand(demo, "gpt-4o-mini", "batch")
    haiku_std = by_hand(demo, "claude-haiku-4-5", "standard")
    batch = traffic["batch"]
    assert (batch.cost_usd, batch.standard_cost_usd, batch.batch_cost_usd) == (
        mini_batch,
        mini_std,
        mini_batch,
    )
    cache = traffic["cache"]
    assert (cache.cost_usd, cache.standard_cost_usd) == (0, mini_std)
    fallback = traffic["fallback"]
    assert fallback.standard_cost_usd == fallback.cost_usd == haiku_std
    assert fallback.counterfactual_cost_usd == mini_std  # the workload's primary model
    reversal = LedgerEntry.objects.get(reverses=traffic["reversed"])
    assert (reversal.standard_cost_usd, reversal.batch_cost_usd) == (-mini_std, -mini_batch)


def test_savings_split_exactly_into_batch_cache_and_tiering_and_report_missed(demo, traffic, staff):
    mini_std = by_hand(demo, "gpt-4o-mini", "standard")
    mini_batch = by_hand(demo, "gpt-4o-mini", "batch")
    haiku_std = by_hand(demo, "claude-haiku-4-5", "standard")
    gpt4o_std = by_hand(demo, "gpt-4o", "standard")

    response = staff.get("/api/v1/reports/savings", day_range(demo))

    assert response.status_code == 200, response.content
    totals = response.json()["totals"]
    # Spent: rt + fallback + batch + missed + globex (the cache hit is free, x is reversed).
    cost = mini_std + haiku_std + mini_batch + mini_std + gpt4o_std
    counterfactual = mini_std * 5 + gpt4o_std
    assert usd(totals["cost_usd"]) == cost
    assert usd(totals["counterfactual_cost_usd"]) == counterfactual
    assert usd(totals["saved_usd"]) == counterfactual - cost
    assert usd(totals["saved_by_batch_usd"]) == mini_std - mini_batch
    assert usd(totals["saved_by_cache_usd"]) == mini_std
    assert usd(totals["saved_by_tiering_usd"]) == mini_std - haiku_std  # negative: dearer
    assert usd(totals["missed_savings_usd"]) == mini_std - mini_batch
    parts = ("saved_by_batch_usd", "saved_by_cache_usd", "saved_by_tiering_usd")
    assert sum(usd(totals[p]) for p in parts) == usd(totals["saved_usd"])

    rows = {(r["team"], r["label"]): r for r in response.json()["by_workload"]}
    assert set(rows) == {
        ("acme", "product-search"),
        ("acme", "review-moderation"),
        ("globex", "dashboard-qa"),
    }
    assert usd(rows["acme", "review-moderation"]["missed_savings_usd"]) == mini_std - mini_batch
    assert usd(rows["acme", "product-search"]["missed_savings_usd"]) == 0
    (period,) = response.json()["by_period"]
    assert usd(period["saved_usd"]) == counterfactual - cost


def test_overview_sums_by_team_mode_and_day_and_a_member_sees_only_their_team(
    demo, traffic, staff, member
):
    everyone = staff.get("/api/v1/reports/overview", day_range(demo)).json()
    assert {r["name"] for r in everyone["by_team"]} == {"acme", "globex"}
    entries = list(LedgerEntry.objects.all())
    assert usd(everyone["totals"]["cost_usd"]) == sum(e.cost_usd for e in entries)
    by_mode = {r["name"]: usd(r["cost_usd"]) for r in everyone["by_mode"]}
    for mode in Mode.values:
        assert by_mode.get(mode, 0) == sum(e.cost_usd for e in entries if e.mode == mode)
    daily = {d["day"]: usd(d["cost_usd"]) for d in everyone["daily"]}
    assert daily[demo.at.date().isoformat()] == sum(e.cost_usd for e in entries)
    assert len(daily) == 2  # both days of the range, the quiet one at zero

    mine = member.get("/api/v1/reports/overview", day_range(demo)).json()
    acme = [e for e in entries if e.team_id == demo.acme.pk]
    assert {r["name"] for r in mine["by_team"]} == {"acme"}
    assert usd(mine["totals"]["cost_usd"]) == sum(e.cost_usd for e in acme)
    assert {b["team"] for b in mine["budgets"]} == {"acme"}
    assert "dashboard-qa" not in {r["name"] for r in mine["by_workload"]}


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"since": "2026-13-01"}, "since", "Date has wrong format"),
        ({"since": "2026-05-02", "until": "2026-05-01"}, "since", "starts"),
        ({"since": "2020-01-01", "until": "2026-01-01"}, "until", "at most"),
        ({"mode": "teleport"}, "mode", "not a valid choice"),
        ({"team": "globex"}, "team", "You have no team 'globex'"),
        ({"workload": "dashboard-qa"}, "workload", "No workload 'dashboard-qa'"),
        ({"model": "gpt-9"}, "model", "No model 'gpt-9'"),
    ],
)
def test_bad_filters_are_a_400_naming_the_field_in_the_api_and_on_the_page(
    member, params, field, message
):
    response = member.get("/api/v1/reports/overview", params)
    assert response.status_code == 400
    assert message in response.json()[field][0]
    page = member.get("/billing/", params)
    assert page.status_code == 400
    assert message.replace("'", "&#x27;") in page.content.decode()
    assert member.get("/api/v1/reports/ledger.csv", params).status_code == 400


def test_savings_granularity_is_validated(member):
    response = member.get("/api/v1/reports/savings", {"granularity": "year"})
    assert response.status_code == 400
    assert "granularity" in response.json()
    page = member.get("/billing/savings/", {"granularity": "year"})
    assert page.status_code == 400
    assert "granularity: Must be one of day, week, month." in page.content.decode()


def test_calculator_equals_a_hand_computation_from_the_price_table(demo, member):
    price = {
        p: Price.objects.filter(model=demo.models["gpt-4o-mini"], processing=p)
        .order_by("-effective_from")
        .first()
        for p in ("standard", "batch")
    }
    per = {
        p: (1200 * price[p].input_per_mtok + 350 * price[p].output_per_mtok) / MILLION
        for p in price
    }
    body = {
        "model": "gpt-4o-mini",
        "monthly_requests": 250_000,
        "input_tokens": 1200,
        "output_tokens": 350,
        "batch_share": "0.6",
        "cache_hit_rate": "0.1",
    }

    got = member.post("/api/v1/reports/calculator", body, format="json").json()

    assert usd(got["standard_per_request_usd"]) == per["standard"]
    assert usd(got["all_realtime_usd"]) == 250_000 * per["standard"]
    assert usd(got["all_batch_usd"]) == 250_000 * per["batch"]
    # 10% cache hits are free; of the other 225,000, 60% batch and 40% realtime.
    hybrid = 225_000 * (Decimal("0.6") * per["batch"] + Decimal("0.4") * per["standard"])
    assert usd(got["hybrid_usd"]) == hybrid
    assert usd(got["delta_usd"]) == 250_000 * per["standard"] - hybrid

    page = member.get("/billing/calculator/", {**body, "batch_share": "60", "cache_hit_rate": "10"})
    assert page.status_code == 200
    assert f'id="hybrid" data-usd="{hybrid:.12f}"' in page.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"batch_share": "1.5"}, "batch_share"),
        ({"cache_hit_rate": "-0.1"}, "cache_hit_rate"),
        ({"monthly_requests": -1}, "monthly_requests"),
        ({"model": "gpt-9"}, "model"),
        ({"input_tokens": "many"}, "input_tokens"),
    ],
)
def test_calculator_refuses_bad_input_with_a_400(demo, member, body, field):
    good = {
        "model": "gpt-4o-mini",
        "monthly_requests": 10,
        "input_tokens": 10,
        "output_tokens": 10,
        "batch_share": "0.5",
    }
    response = member.post("/api/v1/reports/calculator", good | body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_calculator_page_takes_percentages_and_explains_a_bad_one(member):
    page = member.get("/billing/calculator/", {"batch_share": "150"})
    assert page.status_code == 400
    assert "Batch-eligible share (%): must be a percentage from 0 to 100." in page.content.decode()
    assert "batch_share:" not in page.content.decode()


def alert_items(html: str) -> list[str]:
    """The messages of the page's #errors box, in order."""
    box = html.split('id="errors"', 1)[1].split("</div>", 1)[0]
    return re.findall(r"<li>(.*?)</li>", box)


def test_calculator_page_shows_every_error_at_once_by_its_label(demo, member):
    page = member.get(
        "/billing/calculator/",
        {
            "model": "gpt-9",
            "monthly_requests": "-3",
            "input_tokens": "lots",
            "output_tokens": "1.5",
            "batch_share": "150",
            "cache_hit_rate": "ten",
        },
    )

    assert page.status_code == 400
    html = page.content.decode()
    assert alert_items(html) == [
        "Model: no enabled model &#x27;gpt-9&#x27;.",
        "Requests per month: must be a whole number ≥ 0.",
        "Input tokens per request: must be a whole number ≥ 0.",
        "Output tokens per request: must be a whole number ≥ 0.",
        "Batch-eligible share (%): must be a percentage from 0 to 100.",
        "Cache hit rate (%): must be a percentage from 0 to 100.",
    ]
    assert html.count('aria-invalid="true"') == 6
    assert 'id="result"' not in html


def test_calculator_api_reports_every_error_at_once_keyed_by_field_and_labelled(demo, member):
    response = member.post(
        "/api/v1/reports/calculator",
        {
            "model": "gpt-9",
            "monthly_requests": 10**11,
            "input_tokens": -1,
            "output_tokens": "x",
            "batch_share": "1.5",
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "model": ["Model: no enabled model 'gpt-9'."],
        "monthly_requests": ["Requests per month: must be at most 10,000,000,000."],
        "input_tokens": ["Input tokens per request: must be a whole number ≥ 0."],
        "output_tokens": ["Output tokens per request: must be a whole number ≥ 0."],
        "batch_share": ["Batch-eligible share: must be a share from 0 to 1."],
    }
    missing = member.post("/api/v1/reports/calculator", {}, format="json").json()
    assert missing["monthly_requests"] == ["Requests per month: required."]
    assert set(missing) == {
        "model",
        "monthly_requests",
        "input_tokens",
        "output_tokens",
        "batch_share",
    }


def test_audit_values_a_missed_saving_at_stream_minus_batch_cost_per_month(demo, traffic, staff):
    mini_std = by_hand(demo, "gpt-4o-mini", "standard")
    mini_batch = by_hand(demo, "gpt-4o-mini", "batch")

    rows = staff.get("/api/v1/reports/audit", day_range(demo)).json()

    row = next(r for r in rows if r["workload"] == "review-moderation")
    assert row["action"] == "use_batch_api"
    assert row["missed"] == 1
    # One missed request in a 2-day range: 15 a month, each (stream - batch) cheaper.
    assert row["eligible_per_month"] == 15
    assert usd(row["value_per_month_usd"]) == (mini_std - mini_batch) * 15
    search = next(r for r in rows if r["workload"] == "product-search")
    assert search["action"] == "keep"
    assert search["streams"] == 1 and search["streams_read_to_end"] == 1
    assert rows[0]["workload"] == "review-moderation"  # the most valuable first


def test_budgets_show_spent_reserved_remaining_and_a_projection(demo, traffic, member):
    lines = member.get("/api/v1/reports/budgets").json()
    assert {b["team"] for b in lines} == {"acme"}
    for line in lines:
        spent, limit = usd(line["spent_usd"]), usd(line["limit_usd"])
        assert usd(line["remaining_usd"]) == limit - spent - usd(line["reserved_usd"])
        assert line["projected_usd"] is None or usd(line["projected_usd"]) >= spent


def csv_download(user, params) -> tuple[object, bytes]:
    """GET the CSV through Django's ASGI handler (as daphne serves it) and read the stream."""

    async def fetch():
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.get("/api/v1/reports/ledger.csv", params)
        if not response.streaming:
            return response, response.content
        return response, b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(fetch)()


def test_ledger_csv_has_every_entry_of_the_filter_once(demo, traffic):
    user = User.objects.create_user("ops2", is_staff=True)

    response, body = csv_download(user, {**day_range(demo), "team": "acme"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    expected = {
        e.pk: e for e in LedgerEntry.objects.filter(team=demo.acme).select_related("workload")
    }
    assert sorted(int(r["id"]) for r in rows) == sorted(expected)
    for row in rows:
        entry = expected[int(row["id"])]
        assert Decimal(row["cost_usd"]) == entry.cost_usd
        assert row["workload"] == entry.workload.slug
    assert {r["team"] for r in rows} == {"acme"}


def test_every_page_renders_for_a_member_and_links_each_entry_to_its_request(demo, traffic):
    user = User.objects.create_user("page-lead")
    demo.acme.members.add(user)
    client = Client()
    client.force_login(user)
    for path in (
        "/billing/",
        "/billing/ledger/",
        "/billing/savings/",
        "/billing/audit/",
        "/billing/budgets/",
        "/billing/calculator/",
    ):
        response = client.get(path, day_range(demo))
        assert response.status_code == 200, path
        assert "globex" not in response.content.decode(), path
    ledger = client.get("/billing/ledger/", day_range(demo)).content.decode()
    request_id = traffic["missed"].request_id
    assert f'href="/requests/{request_id}/"' in ledger
    detail = client.get(f"/requests/{request_id}/")
    assert detail.status_code == 200
    assert "missed saving" in detail.content.decode()
    other = traffic["globex"].request_id
    assert client.get(f"/requests/{other}/").status_code == 404


def test_pages_need_a_sign_in(client):
    response = client.get("/billing/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_audit_tells_a_realtime_workload_used_at_night_to_defer_and_a_policy_to_allow_batch(
    demo, staff
):
    night = demo.at.replace(hour=2)
    for i in range(3):
        record(
            demo, f"n{i}", workload="product-search", model="gpt-4o-mini", mode=Mode.REALTIME,
            at=night,
        )  # fmt: skip
    policy = demo.workloads["nightly-reports"].policy
    policy.allow_batch = False
    policy.save(update_fields=["allow_batch"])
    record(demo, "nr", workload="nightly-reports", model="claude-sonnet-4-6", mode=Mode.REALTIME)
    per_request = by_hand(demo, "gpt-4o-mini", "standard") - by_hand(demo, "gpt-4o-mini", "batch")
    sonnet = by_hand(demo, "claude-sonnet-4-6", "standard") - by_hand(
        demo, "claude-sonnet-4-6", "batch"
    )

    rows = {r["workload"]: r for r in staff.get("/api/v1/reports/audit", day_range(demo)).json()}

    search = rows["product-search"]
    assert search["night_share"] == 1.0
    assert search["requests_by_hour"][2] == 3
    assert search["action"] == "defer"
    assert usd(search["value_per_month_usd"]) == per_request * 3 * 15  # 3 in 2 days
    reports = rows["nightly-reports"]
    assert reports["action"] == "allow_batch"
    assert usd(reports["value_per_month_usd"]) == sonnet * 15


# --- the range a report covers ----------------------------------------------------------


def utc_today() -> date:
    return datetime.now(UTC).date()


def test_reports_open_on_the_last_30_days_in_the_api_and_on_the_page(member):
    today = utc_today()

    body = member.get("/api/v1/reports/overview").json()

    assert body["range"]["since"] == (today - timedelta(days=29)).isoformat()
    assert body["range"]["until"] == today.isoformat()
    assert body["range"]["days"] == 30
    assert body["range"]["preset"] == "last_30_days"
    assert len(body["daily"]) == 30
    html = member.get("/billing/").content.decode()
    since = today - timedelta(days=29)
    assert (
        f"<strong>Last 30 days</strong>: {since:%b} {since.day}, {since.year} \u2013 "
        f"{today:%b} {today.day}, {today.year} <small>(UTC, 30 days)</small>"
    ) in html
    assert f'value="{since.isoformat()}"' in html  # the From field says the same
    for path in ("/billing/ledger/", "/billing/savings/", "/billing/audit/"):
        page = member.get(path).content.decode()
        assert 'data-days="30" data-preset="last_30_days"' in page, path
    savings = member.get("/api/v1/reports/savings").json()["range"]
    ledger = member.get("/api/v1/reports/ledger").json()["range"]
    assert savings == ledger == body["range"]


@pytest.mark.parametrize(
    ("today", "preset", "since", "until"),
    [
        # The 2nd of a month: "this month" is two days, the default is not.
        (date(2026, 6, 2), "this_month", date(2026, 6, 1), date(2026, 6, 2)),
        (date(2026, 6, 2), "last_month", date(2026, 5, 1), date(2026, 5, 31)),
        (date(2026, 6, 2), "last_30_days", date(2026, 5, 4), date(2026, 6, 2)),
        (date(2026, 6, 2), "last_90_days", date(2026, 3, 5), date(2026, 6, 2)),
        # Across a year's end and a leap day.
        (date(2027, 1, 2), "last_month", date(2026, 12, 1), date(2026, 12, 31)),
        (date(2027, 1, 2), "last_30_days", date(2026, 12, 4), date(2027, 1, 2)),
        (date(2027, 1, 2), "last_90_days", date(2026, 10, 5), date(2027, 1, 2)),
        (date(2028, 3, 1), "last_month", date(2028, 2, 1), date(2028, 2, 29)),
        (date(2028, 3, 1), "this_month", date(2028, 3, 1), date(2028, 3, 1)),
    ],
)
def test_each_named_range_covers_the_days_its_name_says(today, preset, since, until):
    assert preset_bounds(preset, today) == (since, until)


def test_on_the_2nd_of_january_each_named_range_reaches_the_api_and_the_page(demo):
    user = User.objects.create_user("january")
    demo.acme.members.add(user)
    with time_machine.travel(datetime(2027, 1, 2, 9, 30, tzinfo=UTC), tick=False):
        client = APIClient()
        client.force_login(user)
        ranges = {
            name: client.get("/api/v1/reports/overview", {"range": name}).json()["range"]
            for name in RANGE_PRESETS
        }
        default = client.get("/api/v1/reports/overview").json()["range"]
        page = client.get("/billing/savings/", {"range": "last_month", "granularity": "week"})

    assert {name: (r["since"], r["until"], r["days"]) for name, r in ranges.items()} == {
        "this_month": ("2027-01-01", "2027-01-02", 2),
        "last_month": ("2026-12-01", "2026-12-31", 31),
        "last_30_days": ("2026-12-04", "2027-01-02", 30),
        "last_90_days": ("2026-10-05", "2027-01-02", 90),
    }
    assert all(r["preset"] == name for name, r in ranges.items())
    assert default == ranges["last_30_days"]
    html = page.content.decode()
    assert "<strong>Last month</strong>: Dec 1, 2026 \u2013 Dec 31, 2026" in html
    assert '<strong data-range="last_month" aria-current="true">Last month</strong>' in html
    # The other ranges are links that keep the page's other filters.
    assert 'href="?granularity=week&amp;range=last_90_days"' in html


def test_since_and_until_win_over_a_named_range(member):
    today = utc_today()
    both = member.get(
        "/api/v1/reports/overview",
        {"range": "last_90_days", "since": "2026-03-03", "until": "2026-03-05"},
    ).json()["range"]
    assert (both["since"], both["until"], both["days"], both["preset"]) == (
        "2026-03-03",
        "2026-03-05",
        3,
        None,
    )
    since_only = member.get(
        "/api/v1/reports/overview", {"range": "last_month", "since": "2026-01-10"}
    ).json()["range"]
    assert (since_only["since"], since_only["until"]) == (
        "2026-01-10",
        max(today, date(2026, 1, 10)).isoformat(),
    )
    until_only = member.get("/api/v1/reports/overview", {"until": "2026-03-05"}).json()["range"]
    assert (until_only["since"], until_only["until"], until_only["days"]) == (
        "2026-02-04",
        "2026-03-05",
        30,
    )
    # The dates of a named range are named, so re-submitting the filter form keeps its name.
    month = member.get(
        "/api/v1/reports/overview",
        {"since": today.replace(day=1).isoformat(), "until": today.isoformat()},
    ).json()["range"]
    assert month["preset"] in ("this_month", "last_30_days")  # both on a month's 30th day


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"range": "forever"}, "range", '"forever" is not a range: use one of this_month'),
        ({"until": "9999-12-31"}, "until", "Must be a day before 9999-12-31"),
        ({"since": "9999-12-31"}, "until", "Must be a day before 9999-12-31"),
        ({"range": "last_month", "since": "2026-02-30"}, "since", "Date has wrong format"),
    ],
)
def test_a_bad_range_is_a_400_naming_the_parameter(member, params, field, message):
    for path in ("/api/v1/reports/overview", "/api/v1/reports/ledger", "/api/v1/reports/audit"):
        response = member.get(path, params)
        assert response.status_code == 400, path
        assert message in response.json()[field][0], path
    assert member.get("/api/v1/reports/ledger.csv", params).status_code == 400
    page = member.get("/billing/ledger/", params)
    assert page.status_code == 400
    assert f"{field}: {message}".replace('"', "&quot;") in page.content.decode()
    assert 'data-range="last_30_days"' in page.content.decode()  # a way out, one click away


def test_a_range_ending_near_the_first_date_is_a_report_not_a_crash(member):
    body = member.get("/api/v1/reports/overview", {"until": "0001-01-05"}).json()
    assert (body["range"]["since"], body["range"]["days"]) == ("0001-01-01", 5)


def test_the_budgets_page_has_no_range_to_pick(member):
    html = member.get("/billing/budgets/").content.decode()
    assert 'id="f-since"' not in html
    assert 'id="ranges"' not in html


# --- money is never in exponent form ------------------------------------------------------

EXPONENT = re.compile(r"\dE[-+]?\d")


def test_a_free_and_a_tiny_entry_never_read_in_exponent_form(demo, staff):
    free = record(
        demo,
        "free",
        workload="product-search",
        model="gpt-4o-mini",
        mode=Mode.REALTIME,
        usage=Usage(input_tokens=0, output_tokens=0),
    )
    hit = record(demo, "hit", workload="product-search", model="gpt-4o-mini", mode=Mode.CACHE)
    tiny = record(
        demo,
        "tiny",
        workload="product-search",
        model="gpt-4o-mini",
        mode=Mode.REALTIME,
        usage=Usage(input_tokens=0, output_tokens=1),
    )
    assert str(free.cost_usd) == "0E-12" and hit.cost_usd == 0  # what str() would print
    assert Decimal(0) < tiny.cost_usd < Decimal("0.000001")

    for entry in (free, hit, tiny):
        assert not EXPONENT.search(str(entry)), str(entry)
    assert str(free).endswith("$0.000000000000")
    params = {**day_range(demo), "team": "acme"}
    for path in (
        "/api/v1/reports/ledger",
        "/api/v1/reports/overview",
        "/api/v1/reports/savings",
        "/api/v1/reports/audit",
        "/api/v1/ledger",
    ):
        response = staff.get(path, params)
        assert response.status_code == 200, path
        assert not EXPONENT.search(response.content.decode()), path
    entries = {e["id"]: e for e in staff.get("/api/v1/reports/ledger", params).json()["results"]}
    assert entries[free.pk]["cost_usd"] == "0.000000000000"
    assert entries[free.pk]["batch_cost_usd"] == "0.000000000000"

    _, body = csv_download(User.objects.get(username="ops"), params)
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(body.decode()))}
    assert rows[free.pk]["cost_usd"] == "0.000000000000"
    assert Decimal(rows[tiny.pk]["cost_usd"]) == tiny.cost_usd
    assert not EXPONENT.search(body.decode())

    for path in ("/billing/", "/billing/ledger/", "/billing/savings/", "/billing/audit/"):
        # Only the page's own content: the header's random CSRF token can hold "3E9".
        html = staff.get(path, params).content.decode().split("<main", 1)[1]
        assert not EXPONENT.search(html), (path, EXPONENT.search(html))
    ledger = staff.get("/billing/ledger/", params).content.decode()
    assert f'data-usd="{tiny.cost_usd:.12f}">${tiny.cost_usd:.10f}</td>' in ledger
