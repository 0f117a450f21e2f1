"""The billing pages in a real browser (Debian's headless Chromium, driven by Playwright),
as a member of one team and as staff, against figures this test computes itself from the
ledger rows and the price table. Traffic goes through the real request path first: the
native API, the OpenAI-compatible endpoint, the response cache and a provider batch."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from tests.live.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, ROOT
from tests.live.stack import Llmops
from tests.live.test_playground_browser import browser  # noqa: F401 - the fixture

MEMBER, MEMBER_PASSWORD = "acme-lead", "acme-lead-password-1"
PAGES = ["/billing/", "/billing/ledger/", "/billing/savings/", "/billing/audit/",
         "/billing/budgets/", "/billing/calculator/"]  # fmt: skip
MILLION = Decimal(1_000_000)

# Every ledger entry with what the pages sum, read by a separate process from the database.
DUMP = """
import json
from billing.models import LedgerEntry, Price
from routing.models import Request
rows = [
    {"team": e.team.slug, "workload": e.workload.slug, "mode": e.mode, "kind": e.kind,
     "cost": str(e.cost_usd), "counterfactual": str(e.counterfactual_cost_usd),
     "standard": str(e.standard_cost_usd),
     "batch": None if e.batch_cost_usd is None else str(e.batch_cost_usd),
     "missed": bool(e.request and e.request.missed_saving)}
    for e in LedgerEntry.objects.select_related("team", "workload", "request")
]
prices = {
    p: [str(x) for x in Price.objects.filter(model__model_id="gpt-4o-mini", processing=p)
        .order_by("-effective_from").values_list("input_per_mtok", "output_per_mtok")[0]]
    for p in ("standard", "batch")
}
print(json.dumps({"entries": rows, "prices": prices}))
"""


def ask(llmops: Llmops, workload: str, text: str, key: str | None = None) -> tuple[int, dict]:
    body = {"workload": workload, "messages": [{"role": "user", "content": text}], "max_tokens": 40}
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return llmops.api("POST", "/api/v1/requests", body, headers)


@pytest.fixture(scope="module")
def ledger(llmops, simulator_server) -> dict:
    simulator_server.reset()
    globex_key = llmops.shell(
        "from routing.models import Team, ApiKey; from routing.keys import api_key_create; "
        "print(api_key_create(team=Team.objects.get(slug='globex'), name='b', "
        "role=ApiKey.Role.ADMIN)[1])"
    )
    llmops.shell(
        "from django.contrib.auth.models import User; from routing.models import Team; "
        f"u = User.objects.create_user({MEMBER!r}, password={MEMBER_PASSWORD!r}); "
        "Team.objects.get(slug='acme').members.add(u); print('ok')"
    )
    # acme: realtime search, a repeat of it (a cache hit), deferred moderation (a batch) and
    # moderation through the OpenAI-compatible endpoint (served now: a missed saving).
    for text in ("Tents for two?", "Boots in size 44?", "Tents for two?"):
        assert ask(llmops, "product-search", text)[0] == 200
    for text in ("Great product!!!", "Fake review?"):
        assert ask(llmops, "review-moderation", text)[0] == 202
    moderation = llmops.openai("review-moderation")
    for text in ("Spam spam spam", "Arrived broken"):
        moderation.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}], max_tokens=30
        )
    # globex: its own realtime traffic, which acme's member must never see.
    for text in ("Revenue by region?", "Churn last week?"):
        assert ask(llmops, "dashboard-qa", text, key=globex_key)[0] == 200
    # The batch worker, as django-q2 would run it, until the deferred requests are billed.
    subprocess.run(
        [sys.executable, "manage.py", "advance_batches", "--flush", "--until-idle", "30"],
        cwd=ROOT,
        env=llmops.env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = json.loads(llmops.shell(DUMP))
    assert {e["mode"] for e in data["entries"]} >= {"realtime", "cache", "batch"}
    assert any(e["missed"] for e in data["entries"])
    return data


def total(entries, field: str, **where) -> Decimal:
    return sum(
        (
            Decimal(e[field])
            for e in entries
            if all(e[k] == v for k, v in where.items()) and e[field] is not None
        ),
        Decimal(0),
    )


def expected(entries) -> dict[str, Decimal]:
    """The figures a page should show, summed here entry by entry."""
    cost, counterfactual = total(entries, "cost"), total(entries, "counterfactual")
    missed = [e for e in entries if e["missed"] and e["mode"] in ("realtime", "stream")]
    return {
        "total-cost": cost,
        "total-counterfactual": counterfactual,
        "total-saved": counterfactual - cost,
        "saved-batch": total(entries, "standard", mode="batch")
        - total(entries, "cost", mode="batch"),
        "saved-cache": total(entries, "standard", mode="cache"),
        "saved-tiering": counterfactual - total(entries, "standard"),
        "total-missed": total(missed, "cost") - total(missed, "batch"),
    }


def sign_in(browser, llmops, username: str, password: str, width: int = 1280) -> Page:  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{llmops.base_url}/billing/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{llmops.base_url}/billing/")
    return page


def shown(page: Page, selector: str) -> Decimal:
    return Decimal(page.locator(selector).first.get_attribute("data-usd"))


def no_horizontal_scroll(page: Page) -> bool:
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
                         && !e.closest('.table-wrap'))
            .slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"""
    )
    fits = page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")
    assert fits, f"wider than the screen: {wide}"
    return fits


def test_a_member_sees_their_team_s_exact_figures_on_every_page_and_nothing_else(
    browser,  # noqa: F811
    llmops,
    ledger,
):
    acme = [e for e in ledger["entries"] if e["team"] == "acme"]
    want = expected(acme)
    page = sign_in(browser, llmops, MEMBER, MEMBER_PASSWORD)

    for name in ("total-cost", "total-counterfactual", "total-saved", "total-missed"):
        assert shown(page, f"#{name}") == want[name], name
    expect(page.locator("#by-team tbody tr")).to_have_count(1)
    for mode in ("realtime", "cache", "batch"):
        row = page.locator(f'#by-mode tr[data-name="{mode}"] td').nth(1)
        assert Decimal(row.get_attribute("data-usd")) == total(acme, "cost", mode=mode)
    expect(page.locator("#daily-chart rect").first).to_be_visible()

    page.goto(f"{llmops.base_url}/billing/ledger/")
    expect(page.locator("#entry-count")).to_have_text(str(len(acme)))
    assert shown(page, "#total-cost") == want["total-cost"]
    expect(page.locator("#ledger tbody tr")).to_have_count(len(acme))
    with page.expect_download() as download:
        page.click("#csv")
    lines = open(download.value.path()).read().splitlines()  # noqa: SIM115
    assert len(lines) == len(acme) + 1

    page.goto(f"{llmops.base_url}/billing/savings/")
    for name in ("total-saved", "saved-batch", "saved-cache", "saved-tiering", "total-missed"):
        assert shown(page, f"#{name}") == want[name], name

    page.goto(f"{llmops.base_url}/billing/audit/")
    sections = page.locator("section.audit")
    workloads = {sections.nth(i).get_attribute("data-workload") for i in range(sections.count())}
    assert workloads == {
        "acme/product-search",
        "acme/review-moderation",
        "acme/product-descriptions",
        "acme/ticket-summaries",
        "acme/support-triage",
        "acme/query-embeddings",
        "acme/catalog-embeddings",
        "acme/listing-translations",
        "acme/log-summaries",
    }
    moderation = page.locator('section.audit[data-workload="acme/review-moderation"]')
    expect(moderation.locator(".badge.act")).to_have_attribute("data-action", "use_batch_api")
    missed = Decimal(moderation.locator(".value").get_attribute("data-usd"))
    assert missed > 0  # the exact formula is checked in tests/billing/test_reports.py

    page.goto(f"{llmops.base_url}/billing/budgets/")
    team_budget = page.locator("#budgets tbody tr").first
    assert Decimal(team_budget.locator(".spent").get_attribute("data-usd")) == want["total-cost"]

    for path in PAGES:
        page.goto(f"{llmops.base_url}{path}")
        assert "globex" not in page.content().lower(), path
    page.goto(f"{llmops.base_url}/billing/?team=globex")
    expect(page.locator("#errors")).to_contain_text("You have no team 'globex'")
    page.context.close()


def test_staff_see_every_team_and_the_calculator_matches_the_price_table(
    browser,  # noqa: F811
    llmops,
    ledger,
):
    entries = ledger["entries"]
    page = sign_in(browser, llmops, ADMIN_USERNAME, ADMIN_PASSWORD)

    assert shown(page, "#total-cost") == expected(entries)["total-cost"]
    for team in ("acme", "globex"):
        cell = page.locator(f'#by-team tr[data-name="{team}"] td').nth(1)
        assert Decimal(cell.get_attribute("data-usd")) == total(entries, "cost", team=team)
    page.select_option("#f-team", "globex")
    page.click("#filters button[type=submit]")
    globex = [e for e in entries if e["team"] == "globex"]
    assert shown(page, "#total-cost") == total(globex, "cost")

    page.goto(f"{llmops.base_url}/billing/calculator/")
    page.select_option("#c-model", "gpt-4o-mini")
    for field, value in (("#c-requests", "200000"), ("#c-in", "800"), ("#c-out", "250"),
                         ("#c-batch", "50"), ("#c-cache", "20")):  # fmt: skip
        page.fill(field, value)
    page.click("#calculator button[type=submit]")
    (s_in, s_out), (b_in, b_out) = (
        [Decimal(x) for x in ledger["prices"][p]] for p in ("standard", "batch")
    )
    standard = (800 * s_in + 250 * s_out) / MILLION
    batch = (800 * b_in + 250 * b_out) / MILLION
    assert shown(page, "#all-realtime") == 200_000 * standard
    assert shown(page, "#all-batch") == 200_000 * batch
    hybrid = 160_000 * (batch + standard) / 2
    assert shown(page, "#hybrid") == hybrid
    assert shown(page, "#delta") == 200_000 * standard - hybrid
    page.context.close()


def test_billing_opens_on_the_last_30_days_with_the_other_ranges_one_click_away(
    browser,  # noqa: F811
    llmops,
    ledger,
):
    acme = [e for e in ledger["entries"] if e["team"] == "acme"]
    before = datetime.now(UTC).date()
    page = sign_in(browser, llmops, MEMBER, MEMBER_PASSWORD)
    after = datetime.now(UTC).date()

    shown_range = page.locator("#range")
    until = date.fromisoformat(shown_range.get_attribute("data-until"))
    since = date.fromisoformat(shown_range.get_attribute("data-since"))
    assert until in (before, after)  # the server's UTC today
    assert since == until - timedelta(days=29)
    assert shown_range.get_attribute("data-days") == "30"
    expect(shown_range).to_contain_text("Last 30 days")
    expect(shown_range).to_contain_text(f"{since:%b} {since.day}, {since.year}")
    expect(page.locator("#f-since")).to_have_value(since.isoformat())
    expect(page.locator('#ranges [aria-current="true"]')).to_have_text("Last 30 days")
    assert shown(page, "#total-cost") == expected(acme)["total-cost"]  # today's traffic is in

    page.click('#ranges a[data-range="last_90_days"]')
    expect(page.locator("#range")).to_have_attribute("data-days", "90")
    expect(page.locator('#ranges [aria-current="true"]')).to_have_text("Last 90 days")
    assert shown(page, "#total-cost") == expected(acme)["total-cost"]

    page.click('#ranges a[data-range="last_month"]')
    expect(page.locator("#range")).to_have_attribute("data-preset", "last_month")
    first = until.replace(day=1)
    last_month_end = first - timedelta(days=1)
    expect(page.locator("#range")).to_have_attribute("data-until", last_month_end.isoformat())
    assert shown(page, "#total-cost") == 0  # everything was spent today
    expect(page.locator("#total-cost")).to_have_text("$0.00")

    # The other pages keep the range they were opened with and offer the same choices.
    page.click('.subnav a:has-text("Ledger")')
    expect(page.locator("#range")).to_have_attribute("data-preset", "last_month")
    page.click('#ranges a[data-range="this_month"]')
    expect(page.locator("#range")).to_have_attribute("data-since", first.isoformat())
    expect(page.locator("#entry-count")).to_have_text(str(len(acme)))
    page.context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_every_billing_page_reads_well_on_desktop_and_phone(
    browser,  # noqa: F811
    llmops,
    ledger,
    width,
):
    page = sign_in(browser, llmops, ADMIN_USERNAME, ADMIN_PASSWORD, width=width)
    for path in PAGES:
        response = page.goto(f"{llmops.base_url}{path}")
        assert response.status == 200, path
        assert no_horizontal_scroll(page), f"{path} scrolls sideways at {width}px"
    page.context.close()
