"""The workload audit finds the response cache and flex: repeated prompts within a TTL and what a
cache would save, deferrable traffic served at full price that flex would serve for less; the
savings split by flex, the cache's hit rate, and the calculator's flex line. Figures are
computed here by hand from the price table and the ledger rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import LedgerEntry
from billing.pricing import Usage
from billing.reports import FLEX_MIN_DEADLINE, Scope, workload_audit
from billing.services import ledger_record_usage, ledger_reverse
from routing.keys import api_key_create
from routing.models import ApiKey, Mode, Request, Team, Workload
from tests.billing.test_reports import by_hand as by_hand_in
from tests.billing.test_reports import day_range, usd

pytestmark = pytest.mark.django_db

USAGE = Usage(input_tokens=2_000, output_tokens=400)
PER_MONTH = 15  # a 2-day range: 30 days at its pace
ASKED = "a" * 64  # a prompt fingerprint
OTHER = "b" * 64


def by_hand(demo, model: str, processing: str) -> Decimal:
    return by_hand_in(demo, model, processing, USAGE)


class Traffic:
    """Requests and their ledger entries, recorded through the ledger service as the request
    path records them, at chosen moments."""

    def __init__(self, demo) -> None:
        self.demo = demo
        self.n = 0

    def __call__(
        self,
        workload: str,
        *,
        model: str,
        mode: str = Mode.REALTIME,
        after: timedelta = timedelta(0),
        fingerprint: str = "",
        cache_lookup: bool = False,
        status: str = Request.Status.COMPLETED,
    ) -> Request:
        self.n += 1
        w = self.demo.workloads[workload]
        at = self.demo.at + after
        request = Request.objects.create(
            team=w.team,
            workload=w,
            mode=mode,
            status=status,
            prompt_fingerprint=fingerprint,
            cache_lookup=cache_lookup,
            created_at=at,
        )
        if status == Request.Status.COMPLETED:
            ledger_record_usage(
                key=f"t{self.n}",
                team=w.team,
                workload=w,
                request=request,
                model=self.demo.models[model],
                mode=mode,
                usage=USAGE,
                at=at,
            )
        return request


@pytest.fixture
def traffic(demo) -> Traffic:
    return Traffic(demo)


@pytest.fixture
def staff(db) -> APIClient:
    client = APIClient()
    client.force_login(User.objects.create_user("ops", is_staff=True))
    return client


def audit_rows(client, params: dict[str, str]) -> dict[str, dict]:
    response = client.get("/api/v1/reports/audit", params)
    assert response.status_code == 200, response.content
    return {row["workload"]: row for row in response.json()}


def audit(client, demo, **params) -> dict[str, dict]:
    return audit_rows(client, {**day_range(demo), **params})


def recommended(row: dict) -> dict[str, Decimal]:
    return {r["action"]: usd(r["value_per_month_usd"]) for r in row["recommendations"]}


# --- the response cache -------------------------------------------------------------------


def test_a_repeat_counts_within_the_ttl_window_and_not_outside_it(demo, traffic, staff):
    mini = "gpt-4o-mini"
    traffic("dashboard-qa", model=mini, fingerprint=ASKED)
    repeat = traffic("dashboard-qa", model=mini, fingerprint=ASKED, after=timedelta(minutes=30))
    # 2 h 30 min after the last asking: outside the policy's 1 h TTL, inside a 4 h one.
    late = traffic("dashboard-qa", model=mini, fingerprint=ASKED, after=timedelta(hours=3))
    traffic("dashboard-qa", model=mini, fingerprint=OTHER, after=timedelta(minutes=31))
    # No fingerprint (recorded before it was kept): never a repeat.
    traffic("dashboard-qa", model=mini, after=timedelta(minutes=1))
    traffic("dashboard-qa", model=mini, after=timedelta(minutes=2))
    # The same question failed: it filled no cache, and is not a repeat either.
    traffic(
        "dashboard-qa",
        model=mini,
        fingerprint=OTHER,
        after=timedelta(minutes=5),
        status=Request.Status.FAILED,
    )
    # The same prompt in another workload is another workload's repeat, not this one's.
    traffic("nightly-reports", model=mini, fingerprint=ASKED, after=timedelta(minutes=20))
    each = by_hand(demo, mini, "standard")
    assert repeat.ledger_entries.get().cost_usd == each

    rows = audit(staff, demo)

    qa = rows["dashboard-qa"]
    assert qa["cache_ttl_seconds"] == 3600  # the policy's (the default TTL), cache off
    assert (qa["repeats"], qa["fingerprinted"]) == (1, 4)
    assert qa["repeat_share"] == 0.25
    assert usd(qa["cache_value_per_month_usd"]) == each * PER_MONTH
    assert rows["nightly-reports"]["repeats"] == 0

    wider = audit(staff, demo, cache_ttl="4h")["dashboard-qa"]
    assert wider["cache_ttl_seconds"] == 4 * 3600
    assert (wider["repeats"], wider["fingerprinted"]) == (2, 4)
    assert usd(wider["cache_value_per_month_usd"]) == 2 * each * PER_MONTH
    assert late.ledger_entries.get().cost_usd == each


def test_a_repeat_of_a_request_before_the_range_counts(demo, traffic, staff):
    start = demo.at.replace(hour=0, minute=0) - timedelta(days=1)  # the range's first moment
    before = start - timedelta(minutes=10) - demo.at
    traffic("dashboard-qa", model="gpt-4o", fingerprint=ASKED, after=before)
    traffic("dashboard-qa", model="gpt-4o", fingerprint=ASKED, after=before + timedelta(minutes=20))

    qa = audit(staff, demo)["dashboard-qa"]

    assert (qa["repeats"], qa["fingerprinted"]) == (1, 1)  # the first is before the range
    assert usd(qa["cache_value_per_month_usd"]) == by_hand(demo, "gpt-4o", "standard") * PER_MONTH


def test_repeats_with_the_cache_off_recommend_turning_it_on_at_what_they_cost(demo, traffic, staff):
    for minutes in (0, 10, 20, 50):
        traffic("dashboard-qa", model="gpt-4o", fingerprint=ASKED, after=timedelta(minutes=minutes))
    gpt4o = by_hand(demo, "gpt-4o", "standard")

    qa = audit(staff, demo)["dashboard-qa"]

    assert qa["repeats"] == 3
    (cache,) = qa["recommendations"]
    assert cache["action"] == "enable_cache" and cache["label"] == "turn the cache on"
    assert "policy interactive (TTL 1 h)" in cache["text"]
    assert "75% of its requests (3 of 4)" in cache["text"]
    assert usd(cache["value_per_month_usd"]) == 3 * gpt4o * PER_MONTH
    assert cache["eligible_per_month"] == 3 * PER_MONTH
    assert usd(cache["cost_per_request_usd"]) == gpt4o and usd(cache["then_per_request_usd"]) == 0
    # The one-line summary is the best recommendation, as before.
    assert (qa["action"], qa["recommendation"]) == ("enable_cache", cache["text"])
    assert usd(qa["value_per_month_usd"]) == 3 * gpt4o * PER_MONTH


def test_a_reversed_repeat_is_worth_nothing_to_a_cache(demo, traffic, staff):
    traffic("dashboard-qa", model="gpt-4o", fingerprint=ASKED)
    repeat = traffic("dashboard-qa", model="gpt-4o", fingerprint=ASKED, after=timedelta(minutes=5))
    ledger_reverse(entry=repeat.ledger_entries.get(), reason="test: refunded")

    qa = audit(staff, demo)["dashboard-qa"]

    assert qa["repeats"] == 1
    assert usd(qa["cache_value_per_month_usd"]) == 0
    assert qa["recommendations"] == [] and qa["action"] == "keep"


def test_a_workload_with_the_cache_on_shows_its_hit_rate_beside_the_potential(demo, traffic, staff):
    mini = "gpt-4o-mini"
    traffic("product-search", model=mini, fingerprint=ASKED, cache_lookup=True)
    traffic(
        "product-search",
        model=mini,
        mode=Mode.CACHE,
        fingerprint=ASKED,
        cache_lookup=True,
        after=timedelta(minutes=1),
    )
    traffic(
        "product-search",
        model=mini,
        fingerprint=OTHER,
        cache_lookup=True,
        after=timedelta(minutes=2),
    )
    # A repeat the cache missed (another cap, say) is what it could still save.
    missed = traffic(
        "product-search",
        model=mini,
        fingerprint=OTHER,
        cache_lookup=True,
        after=timedelta(minutes=3),
    )

    search = audit(staff, demo)["product-search"]

    assert search["cache_enabled"] is True
    assert (search["cache_hits"], search["cache_lookups"]) == (1, 4)
    assert search["cache_hit_rate"] == 0.25
    assert search["repeats"] == 2  # the hit and the miss
    assert usd(search["cache_value_per_month_usd"]) == (
        missed.ledger_entries.get().cost_usd * PER_MONTH
    )
    assert "enable_cache" not in recommended(search)  # it is on

    overview = staff.get("/api/v1/reports/overview", day_range(demo)).json()
    assert overview["cache"] == [
        {
            "team": "acme",
            "workload": "product-search",
            "lookups": 4,
            "hits": 1,
            "hit_rate": "0.2500",
        }
    ]
    page = staff.get("/billing/", day_range(demo)).content.decode()
    assert '<tr data-name="acme/product-search">' in page
    assert 'class="num hit-rate" data-rate="0.25">25.0%</td>' in page
    audit_page = staff.get("/billing/audit/", day_range(demo)).content.decode()
    assert '<span class="hit-rate">25%</span> <small>(1 of 4 lookups)</small>' in audit_page


# --- flex -----------------------------------------------------------------------------------


def test_flex_would_save_only_on_deferrable_workloads_due_in_minutes_on_flex_priced_models(
    demo, traffic, staff
):
    five = "gpt-5-mini"
    standard, flex = by_hand(demo, five, "standard"), by_hand(demo, five, "flex")
    assert flex < standard
    # anomaly-alerts: near realtime, due in 15 min, policy alerts has flex off.
    for minutes in (0, 30):
        traffic("anomaly-alerts", model=five, after=timedelta(minutes=minutes))
    # Realtime (a person waits): never flex.
    traffic("dashboard-qa", model=five)
    # Deferrable, but on a model without a flex price.
    traffic("review-moderation", model="gpt-4o-mini", mode=Mode.REALTIME)
    # Deferrable on a flex-priced model, but due in under 2 minutes.
    Workload.objects.filter(pk=demo.workloads["nightly-reports"].pk).update(
        deadline=FLEX_MIN_DEADLINE - timedelta(seconds=1)
    )
    traffic("nightly-reports", model=five)

    rows = audit(staff, demo)

    alerts = rows["anomaly-alerts"]
    assert alerts["allow_flex"] is False
    assert alerts["flex_missed"] == 2
    assert usd(alerts["flex_value_per_month_usd"]) == 2 * (standard - flex) * PER_MONTH
    entry = LedgerEntry.objects.filter(workload=demo.workloads["anomaly-alerts"]).first()
    assert (entry.cost_usd, entry.flex_cost_usd) == (standard, flex)
    for name in ("dashboard-qa", "review-moderation", "nightly-reports"):
        assert rows[name]["flex_missed"] == 0, name
        assert usd(rows[name]["flex_value_per_month_usd"]) == 0, name
        assert not {"allow_flex", "use_flex"} & set(recommended(rows[name])), name


def test_flex_off_is_an_allow_flex_recommendation_beside_allow_batch_sorted_by_value(
    demo, traffic, staff
):
    five = "gpt-5-mini"
    for minutes in (0, 30, 60):
        traffic("anomaly-alerts", model=five, fingerprint=ASKED, after=timedelta(minutes=minutes))
    standard, flex = by_hand(demo, five, "standard"), by_hand(demo, five, "flex")
    batch = by_hand(demo, five, "batch")

    alerts = audit(staff, demo)["anomaly-alerts"]

    values = recommended(alerts)
    assert values == {
        "allow_flex": 3 * (standard - flex) * PER_MONTH,
        # Its 15 min deadline leaves room for a (simulated, 10 min) batch: batch is a choice.
        "allow_batch": 3 * (standard - batch) * PER_MONTH,
        # Two of the three ask what was asked half an hour before.
        "enable_cache": 2 * standard * PER_MONTH,
    }
    ordered = [r["action"] for r in alerts["recommendations"]]
    assert [usd(r["value_per_month_usd"]) for r in alerts["recommendations"]] == sorted(
        values.values(), reverse=True
    )
    # Flex and batch cost the same here: flex wins the tie (the answer stays synchronous).
    assert ordered.index("allow_flex") < ordered.index("allow_batch")
    allow_flex = next(r for r in alerts["recommendations"] if r["action"] == "allow_flex")
    assert allow_flex["text"].startswith("Allow flex in policy alerts: this near_realtime")
    assert "due in 15 min" in allow_flex["text"]
    assert alerts["action"] == ordered[0]
    assert usd(alerts["value_per_month_usd"]) == max(values.values())

    page = staff.get("/billing/audit/", day_range(demo)).content.decode()
    section = page.split('data-workload="globex/anomaly-alerts"', 1)[1].split("</section>", 1)[0]
    shown = [
        part.split('"', 1)[0] for part in section.split('<li class="recommendation" data-action="')
    ][1:]
    assert shown == ordered
    assert f'data-usd="{values["allow_flex"]:.12f}"' in section
    assert "allow flex" in section and "turn the cache on" in section


def test_full_price_traffic_where_flex_is_allowed_is_a_use_flex_recommendation(
    demo, traffic, staff
):
    five = "gpt-5-mini"
    # support-triage: flex allowed; one served at flex, one refused flex and served at full
    # price (what a 429 "no capacity" leaves).
    flexed = traffic("support-triage", model=five, mode=Mode.FLEX)
    traffic("support-triage", model=five, after=timedelta(minutes=3))
    standard, flex = by_hand(demo, five, "standard"), by_hand(demo, five, "flex")

    triage = audit(staff, demo)["support-triage"]

    assert (triage["flexed"], triage["flex_missed"]) == (1, 1)
    assert usd(triage["saved_by_flex_usd"]) == standard - flex
    assert flexed.ledger_entries.get().cost_usd == flex
    # Due in 10 min: no batch is back that soon, so no "allow batch".
    assert recommended(triage) == {"use_flex": (standard - flex) * PER_MONTH}
    assert "Flex is allowed in policy flex-economy" in triage["recommendation"]


def test_a_workload_served_at_flex_as_declared_is_kept(demo, traffic, staff):
    traffic("support-triage", model="gpt-5-mini", mode=Mode.FLEX)

    triage = audit(staff, demo)["support-triage"]

    assert triage["action"] == "keep" and triage["recommendations"] == []
    assert triage["recommendation"] == "Keep: served now at the flex price, as declared."


# --- the savings split ----------------------------------------------------------------------


def test_savings_split_by_flex_exactly_beside_batch_cache_and_tiering(demo, traffic, staff):
    five, mini = "gpt-5-mini", "gpt-4o-mini"
    traffic("support-triage", model=five, mode=Mode.FLEX)
    traffic("support-triage", model=five, mode=Mode.FLEX, after=timedelta(minutes=1))
    traffic("review-moderation", model=mini, mode=Mode.BATCH)
    traffic("product-search", model=mini, mode=Mode.CACHE)
    by_flex = 2 * (by_hand(demo, five, "standard") - by_hand(demo, five, "flex"))

    response = staff.get("/api/v1/reports/savings", day_range(demo))

    totals = response.json()["totals"]
    assert usd(totals["saved_by_flex_usd"]) == by_flex
    assert usd(totals["saved_by_batch_usd"]) == by_hand(demo, mini, "standard") - by_hand(
        demo, mini, "batch"
    )
    parts = (
        "saved_by_batch_usd",
        "saved_by_flex_usd",
        "saved_by_cache_usd",
        "saved_by_tiering_usd",
    )
    assert sum(usd(totals[p]) for p in parts) == usd(totals["saved_usd"])
    rows = {r["label"]: r for r in response.json()["by_workload"]}
    assert usd(rows["support-triage"]["saved_by_flex_usd"]) == by_flex
    assert usd(rows["review-moderation"]["saved_by_flex_usd"]) == 0
    overview = staff.get("/api/v1/reports/overview", day_range(demo)).json()
    assert usd(overview["totals"]["saved_by_flex_usd"]) == by_flex

    for path in ("/billing/savings/", "/billing/"):
        page = staff.get(path, day_range(demo)).content.decode()
        assert f'id="saved-flex" data-usd="{by_flex:.12f}"' in page, path
    table = staff.get("/billing/savings/", day_range(demo)).content.decode()
    assert '<th class="num">by flex</th>' in table


# --- the TTL parameter ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "'soon' is not a duration such as 3600 (seconds), 90s, 30m, 1h or 1d."),
        ("0", "Must be longer than 0 seconds."),
        ("-5", "Must be longer than 0 seconds."),
        ("31d", "Must be at most 30 days."),
        ("99999999999999999999", "is not a duration"),
    ],
)
def test_a_bad_cache_ttl_is_a_400_naming_it_in_the_api_and_on_the_page(staff, value, message):
    response = staff.get("/api/v1/reports/audit", {"cache_ttl": value})
    assert response.status_code == 400
    assert message in response.json()["cache_ttl"][0]
    page = staff.get("/billing/audit/", {"cache_ttl": value})
    assert page.status_code == 400
    html = page.content.decode()
    assert "<li>cache_ttl: " in html and message.replace("'", "&#x27;") in html
    assert 'id="f-cache-ttl"' in html  # the field is there to correct


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3600", 3600), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("P1D", 86400)],
)
def test_a_cache_ttl_may_be_seconds_or_a_duration(demo, staff, value, seconds):
    rows = staff.get("/api/v1/reports/audit", {"cache_ttl": value}).json()
    assert {row["cache_ttl_seconds"] for row in rows} == {seconds}
    page = staff.get("/billing/audit/", {"cache_ttl": value})
    assert page.status_code == 200
    assert f'value="{value}"' in page.content.decode()


# --- the calculator ---------------------------------------------------------------------------


def test_the_calculator_prices_flex_where_the_model_has_a_flex_price(demo, staff):
    body = {
        "monthly_requests": 100_000,
        "input_tokens": 2_000,
        "output_tokens": 400,
        "batch_share": "0.5",
    }
    five = staff.post(
        "/api/v1/reports/calculator", {**body, "model": "gpt-5-mini"}, format="json"
    ).json()
    flex = by_hand(demo, "gpt-5-mini", "flex")
    assert usd(five["flex_per_request_usd"]) == flex
    assert usd(five["all_flex_usd"]) == 100_000 * flex
    assert usd(five["all_flex_delta_usd"]) == usd(five["all_realtime_usd"]) - 100_000 * flex
    assert five["flex_price_version"] is not None

    mini = staff.post(
        "/api/v1/reports/calculator", {**body, "model": "gpt-4o-mini"}, format="json"
    ).json()
    assert (
        mini["flex_per_request_usd"] is mini["all_flex_usd"] is mini["flex_price_version"] is None
    )

    page = staff.get(
        "/billing/calculator/", {**body, "batch_share": "50", "model": "gpt-5-mini"}
    ).content.decode()
    assert f'id="all-flex" data-usd="{100_000 * flex:.12f}"' in page
    assert f'id="per-flex" data-usd="{flex:.12f}"' in page
    no_flex = staff.get(
        "/billing/calculator/", {**body, "batch_share": "50", "model": "gpt-4o-mini"}
    ).content.decode()
    assert '<strong id="all-flex" class="no-flex">no flex price</strong>' in no_flex


# --- through the real request path ----------------------------------------------------------


def test_requests_through_the_api_show_both_opportunities_in_the_audit(demo, client_for, staff):
    """Globex asks its dashboards the same question twice (cache off) and has an anomaly
    explained (flex off); acme triages a ticket (flex on). Real admission and serving,
    against the simulator."""
    globex = client_for(
        api_key_create(team=Team.objects.get(slug="globex"), name="t", role=ApiKey.Role.ADMIN)[1]
    )
    acme = client_for(demo.key)

    def ask(client, workload: str, text: str) -> Request:
        body = {
            "workload": workload,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 40,
        }
        response = client.post("/api/v1/requests", body, format="json")
        assert response.status_code == 200, response.content
        return Request.objects.get(pk=response.json()["id"])

    first = ask(globex, "dashboard-qa", "Revenue by region last week?")
    again = ask(globex, "dashboard-qa", "Revenue by region last week?")
    alert = ask(globex, "anomaly-alerts", "Why did checkout conversion drop at 14:00?")
    triage = ask(acme, "support-triage", "My parcel arrived broken, what now?")

    assert first.prompt_fingerprint and first.prompt_fingerprint == again.prompt_fingerprint
    assert (first.mode, again.mode, first.cache_lookup) == ("realtime", "realtime", False)
    assert (alert.mode, alert.model.model_id) == ("realtime", "gpt-5-mini")
    assert triage.mode == "flex"
    today = timezone.now().date()
    two_days = {"since": (today - timedelta(days=1)).isoformat(), "until": today.isoformat()}
    rows = audit_rows(staff, two_days)
    qa = rows["dashboard-qa"]
    assert (qa["repeats"], qa["fingerprinted"]) == (1, 2)
    again_cost = again.ledger_entries.get().cost_usd
    assert usd(recommended(qa)["enable_cache"]) == again_cost * PER_MONTH
    alerts = rows["anomaly-alerts"]
    entry = alert.ledger_entries.get()
    assert entry.flex_cost_usd is not None and entry.flex_cost_usd < entry.cost_usd
    assert alerts["flex_missed"] == 1
    assert usd(recommended(alerts)["allow_flex"]) == (
        (entry.cost_usd - entry.flex_cost_usd) * PER_MONTH
    )
    assert rows["support-triage"]["flexed"] == 1
    assert rows["support-triage"]["flex_missed"] == 0


def test_the_audit_selector_takes_a_ttl_and_a_scope(demo, traffic):
    traffic("dashboard-qa", model="gpt-4o", fingerprint=ASKED)
    traffic("dashboard-qa", model="gpt-4o", fingerprint=ASKED, after=timedelta(minutes=90))
    day = demo.at.date()
    scope = Scope(teams=Team.objects.all(), since=day, until=day)

    by_policy = {r.workload.slug: r for r in workload_audit(scope)}
    by_two_hours = {r.workload.slug: r for r in workload_audit(scope, cache_ttl=timedelta(hours=2))}

    assert by_policy["dashboard-qa"].repeats == 0
    assert by_two_hours["dashboard-qa"].repeats == 1
    assert by_two_hours["dashboard-qa"].cache_value_per_month_usd == (
        by_hand(demo, "gpt-4o", "standard") * 30
    )
