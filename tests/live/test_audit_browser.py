"""The workload audit of the demo history in a real browser (Debian's headless Chromium, driven
by Playwright): the history `make run` replays (llmops/history.py, here three days of it, as
`seed_demo --history-days` replays it) shows a cache opportunity (globex's dashboard-qa asks
the same questions again with its cache off) and a flex opportunity (globex's anomaly-alerts,
due in 15 minutes, served now at full price with flex off), each with its monthly value, which
this test computes itself from the database in another process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from tests.live.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, ROOT
from tests.live.test_billing_browser import no_horizontal_scroll, shown, sign_in
from tests.live.test_playground_browser import browser  # noqa: F401 - the fixture

HISTORY_DAYS, HISTORY_PER_DAY = 3, 30

# What the audit should say, summed here request by request (no window function): the cost of
# dashboard-qa's completed requests that ask what was asked at most an hour (its policy's cache
# TTL) before, and anomaly-alerts' full-price cost minus its flex price. The default range is
# the last 30 days, so a month is the range itself.
EXPECTED = """
import json
from datetime import timedelta
from decimal import Decimal
from billing.models import LedgerEntry
from routing.models import Request
qa = Request.objects.filter(workload__team__slug="globex", workload__slug="dashboard-qa",
                            status="completed").exclude(prompt_fingerprint="")
last, repeats = {}, []
for r in qa.order_by("created_at"):
    before = last.get(r.prompt_fingerprint)
    if before is not None and r.created_at - before <= timedelta(hours=1):
        repeats.append(r.pk)
    last[r.prompt_fingerprint] = r.created_at
cache = sum(LedgerEntry.objects.filter(request_id__in=repeats).values_list("cost_usd", flat=True),
            Decimal(0))
alerts = LedgerEntry.objects.filter(workload__team__slug="globex",
                                    workload__slug="anomaly-alerts",
                                    mode__in=["realtime", "stream"], flex_cost_usd__isnull=False)
flex = sum((e.cost_usd - e.flex_cost_usd for e in alerts), Decimal(0))
flexed = LedgerEntry.objects.filter(workload__slug="support-triage", mode="flex").count()
print(json.dumps({"cache": str(cache), "repeats": len(repeats), "fingerprinted": qa.count(),
                  "flex": str(flex), "flex_missed": alerts.count(), "flexed": flexed}))
"""


@pytest.fixture(scope="module")
def history(llmops, simulator_server) -> dict:
    """The demo history replayed into the running stack's database (its simulator fresh)."""
    simulator_server.reset()
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "seed_demo",
            "--simulator-url",
            simulator_server.base_url,
            "--history-days",
            str(HISTORY_DAYS),
            "--history-per-day",
            str(HISTORY_PER_DAY),
        ],
        cwd=ROOT,
        env=llmops.env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    expected = json.loads(llmops.shell(EXPECTED))
    assert expected["repeats"] > 0 and expected["flex_missed"] > 0 and expected["flexed"] > 0
    return expected


def test_the_audit_of_the_demo_history_shows_a_cache_and_a_flex_opportunity(
    browser,  # noqa: F811
    llmops,
    history,
):
    page = sign_in(browser, llmops, ADMIN_USERNAME, ADMIN_PASSWORD)
    page.click('.subnav a:has-text("Workload audit")')

    qa = page.locator('section.audit[data-workload="globex/dashboard-qa"]')
    cache = qa.locator('li.recommendation[data-action="enable_cache"]')
    expect(cache).to_contain_text("turn the cache on")
    expect(cache).to_contain_text("Turn the response cache on in policy interactive (TTL 1 h)")
    assert shown(cache, ".value") == Decimal(history["cache"]) > 0
    assert shown(qa, ".cache-value") == Decimal(history["cache"])
    expect(qa.locator(".repeats dd")).to_contain_text(
        f"({history['repeats']} of {history['fingerprinted']})"
    )
    expect(qa.locator(".cache dd")).to_have_text("cache off")

    alerts = page.locator('section.audit[data-workload="globex/anomaly-alerts"]')
    flex = alerts.locator('li.recommendation[data-action="allow_flex"]')
    expect(flex).to_contain_text("allow flex")
    expect(flex).to_contain_text("Allow flex in policy alerts")
    assert shown(flex, ".value") == Decimal(history["flex"]) > 0
    assert shown(alerts, ".flex-value") == Decimal(history["flex"])
    expect(alerts.locator(".flex-missed")).to_contain_text(f"{history['flex_missed']} could have")

    # Served at flex as declared: nothing to do, and what flex saved is on show.
    triage = page.locator('section.audit[data-workload="acme/support-triage"]')
    expect(triage.locator(".badge.act")).to_have_count(0)
    expect(triage.locator(".recommendation")).to_have_text(
        "Keep: served now at the flex price, as declared."
    )
    expect(triage.locator(".flex dd")).to_contain_text(f"{history['flexed']} saved")
    assert shown(triage, ".flex dd [data-usd]") > 0
    # acme's search box has its cache on: its hit rate, not a recommendation to turn it on.
    search = page.locator('section.audit[data-workload="acme/product-search"]')
    expect(search.locator(".cache .hit-rate")).to_have_text(re.compile(r"^[1-9]\d*%$"))
    expect(search.locator('[data-action="enable_cache"]')).to_have_count(0)

    # The page total is each workload's best recommendation, summed.
    best = [
        Decimal(v)
        for v in page.locator("section.audit").evaluate_all(
            """sections => sections.map(s => {
                const first = s.querySelector('li.recommendation .value');
                return first ? first.dataset.usd : '0';
            })"""
        )
    ]
    assert shown(page, "#total-value") == sum(best) > 0
    page.context.close()


def test_the_repeat_window_is_chosen_on_the_page_and_a_bad_one_is_explained(
    browser,  # noqa: F811
    llmops,
    history,
):
    page = sign_in(browser, llmops, ADMIN_USERNAME, ADMIN_PASSWORD)
    page.goto(f"{llmops.base_url}/billing/audit/")

    page.fill("#f-cache-ttl", "2d")
    page.click("#filters button[type=submit]")
    expect(page.locator("#cache-ttl")).to_have_text("2 d")
    qa = page.locator('section.audit[data-workload="globex/dashboard-qa"]')
    expect(qa.locator(".repeats dt")).to_have_text("Repeats within 2 d")
    # A longer window finds at least the repeats of the shorter one.
    assert shown(qa, ".cache-value") >= Decimal(history["cache"])
    expect(qa.locator('li.recommendation[data-action="enable_cache"]')).to_contain_text("TTL 2 d")

    page.fill("#f-cache-ttl", "soon")
    page.click("#filters button[type=submit]")
    expect(page.locator("#errors")).to_contain_text(
        "cache_ttl: 'soon' is not a duration such as 3600 (seconds), 90s, 30m, 1h or 1d."
    )
    expect(page.locator("#f-cache-ttl")).to_have_value("soon")
    page.context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_audit_with_its_recommendations_reads_well_on_desktop_and_phone(
    browser,  # noqa: F811
    llmops,
    history,
    width,
):
    page = sign_in(browser, llmops, ADMIN_USERNAME, ADMIN_PASSWORD, width=width)
    response = page.goto(f"{llmops.base_url}/billing/audit/")
    assert response.status == 200
    expect(page.locator("li.recommendation").first).to_be_visible()
    assert no_horizontal_scroll(page)
    page.context.close()
