"""The admin's batch-job and ledger lists in a real browser (Debian's headless Chromium) at
1400x900, the width a laptop gives the admin with its navigation sidebar open and the list's
filter sidebar beside the table: every column, cost included, is on screen without scrolling
sideways, and a job's status says how it ended. The jobs come from the real batch machinery
against the simulator (one whose three items all errored, then their retry), the ledger from
real traffic, plus a few rows written with the server's own services for states and figures
traffic here does not reach (a running job, a cancelled one, a million-token charge and its
reversal).

Screenshots of both lists go to var/screenshots/admin-batch-jobs-1400.png and
var/screenshots/admin-ledger-1400.png."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from playwright.sync_api import Page, expect

from tests.live.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, ROOT
from tests.live.stack import Llmops
from tests.live.test_billing_browser import sign_in
from tests.live.test_playground_browser import browser  # noqa: F401 - the fixture

SCREENSHOTS = ROOT / "var" / "screenshots"
VIEWPORT = {"width": 1400, "height": 900}

# Rows the traffic below cannot produce, written as the machinery would write them.
EXTRA_ROWS = """
import json
from django.utils import timezone
from batches.models import BatchJob
from billing.pricing import Usage
from billing.services import ledger_record_usage, ledger_reverse
from routing.models import LlmModel, Team, Workload
acme = Team.objects.get(slug="acme")
mini = LlmModel.objects.get(model_id="gpt-4o-mini")
now = timezone.now()
common = dict(team=acme, provider=mini.provider, model=mini, lane="scheduled", reason="size")
running = BatchJob.objects.create(
    **common, status="running", item_count=100, provider_completed=37, provider_failed=3,
    submitted_at=now,
)
cancelled = BatchJob.objects.create(
    **common, status="cancelled", item_count=10, succeeded_count=3, unfinished_count=7,
    submitted_at=now, ended_at=now + timezone.timedelta(hours=26, minutes=30),
    cancel_requested_at=now, cancel_reason="user",
)
big, _ = ledger_record_usage(
    key="admin-browser-big", team=acme, model=LlmModel.objects.get(model_id="claude-opus-4-1"),
    mode="realtime", usage=Usage(input_tokens=1_234_567, cached_input_tokens=98_765,
    cache_write_tokens=4_321, output_tokens=654_321, reasoning_tokens=12_345),
    workload=Workload.objects.get(team=acme, slug="product-descriptions"),
)
reversal, _ = ledger_reverse(entry=big, reason="refunded by the provider")
jobs = [[j.pk, j.status, j.item_count, j.succeeded_count, j.errored_count]
        for j in BatchJob.objects.exclude(pk__in=[running.pk, cancelled.pk]).order_by("pk")]
print(json.dumps({"running": running.pk, "cancelled": cancelled.pk, "big": big.pk,
                  "reversal": reversal.pk, "jobs": jobs}))
"""

# Where the page's table ends against the window and against the box that holds it.
LAYOUT = """() => {
  const table = document.getElementById('result_list');
  const box = table.closest('.results');
  const right = (e) => Math.round(e.getBoundingClientRect().right);
  const widthAs = (width) => {
    table.style.width = width;
    const measured = Math.round(table.getBoundingClientRect().width);
    table.style.width = '';
    return measured;
  };
  return {
    narrowest: widthAs('min-content'),  // every cell wrapped as far as it can
    unwrapped: widthAs('max-content'),  // no cell wrapped
    window: window.innerWidth,
    page: document.documentElement.scrollWidth,
    table: Math.round(table.getBoundingClientRect().width),
    box: box.clientWidth,
    box_right: right(box),
    columns: Object.fromEntries([...table.querySelectorAll('thead th')].map(
      th => [th.className.split(' ').find(c => c.startsWith('column-')) || th.className,
             right(th)])),
  };
}"""


def advance_batches(llmops: Llmops) -> None:
    """The batch worker's steps, as django-q2 would run them, until nothing is due."""
    done = subprocess.run(
        [sys.executable, "manage.py", "advance_batches", "--flush", "--until-idle", "30"],
        cwd=ROOT,
        env=llmops.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def rows(llmops, simulator_server) -> dict:
    simulator_server.reset()
    # The first batch's three items all error; their retry goes into a second batch, which
    # answers them.
    fault = simulator_server.fault(
        provider="openai", kind="batch_item_error", rate=1.0, endpoint="batches", count=1
    )
    llmops.defer("review-moderation", 3)
    advance_batches(llmops)
    simulator_server.delete_fault(fault)
    advance_batches(llmops)
    # Realtime ledger entries beside the batch ones.
    for text in ("Tents for two?", "Boots in size 44?"):
        status, body = llmops.api(
            "POST",
            "/api/v1/requests",
            {"workload": "product-search", "messages": [{"role": "user", "content": text}]},
        )
        assert status == 200, body
    written = json.loads(llmops.shell(EXTRA_ROWS))
    jobs = written.pop("jobs")
    errored = [pk for pk, status, items, ok, bad in jobs if items == 3 and bad == 3]
    retried = [pk for pk, status, items, ok, bad in jobs if items == 3 and ok == 3]
    assert len(errored) == 1 and len(retried) == 1, jobs
    assert [s for pk, s, *_ in jobs if pk == errored[0]] == ["completed"], jobs
    return {"errored": errored[0], "retried": retried[0], **written}


@pytest.fixture
def admin_page(browser, llmops) -> Page:  # noqa: F811
    page = sign_in(browser, llmops, ADMIN_USERNAME, ADMIN_PASSWORD, width=VIEWPORT["width"])
    yield page
    page.context.close()


def fits(page: Page, name: str) -> dict:
    """Assert the list needs no sideways scrolling, of the page or of the table's box; save a
    screenshot as var/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    layout = page.evaluate(LAYOUT)
    print(name, json.dumps(layout))  # the widths, for the record (pytest -s)
    assert layout["page"] <= layout["window"], layout
    assert layout["table"] <= layout["box"], layout
    assert max(layout["columns"].values()) <= layout["box_right"] <= VIEWPORT["width"], layout
    return layout


def on_screen(cell) -> None:
    box = cell.bounding_box()
    assert box is not None and box["width"] > 0
    assert box["x"] + box["width"] <= VIEWPORT["width"], box


def job_row(page: Page, pk: int):
    return page.locator(f"#result_list tbody tr:has(a[href$='/batchjob/{pk}/change/'])")


def test_the_job_list_fits_1400px_and_says_how_each_job_ended(admin_page, llmops, rows):
    page = admin_page
    page.goto(f"{llmops.base_url}/admin/batches/batchjob/")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)

    fits(page, "admin-batch-jobs-1400")

    errored = job_row(page, rows["errored"]).locator("td.field-outcome")
    expect(errored).to_have_text("completed · 3 errored")
    retried = job_row(page, rows["retried"])
    expect(retried.locator("td.field-outcome")).to_have_text("completed · 3 succeeded")
    expect(retried.locator("td.field-cost")).to_have_text(re.compile(r"^\$\d+\.\d+$"))
    expect(job_row(page, rows["running"]).locator("td.field-outcome")).to_have_text(
        "running · 40/100 answered, 3 errored"
    )
    expect(job_row(page, rows["cancelled"]).locator("td.field-outcome")).to_have_text(
        "cancelled · 3 succeeded, 7 cancelled"
    )
    expect(job_row(page, rows["cancelled"]).locator("td.field-turnaround")).to_have_text("26.5 h")
    for pk in (rows["errored"], rows["retried"], rows["running"], rows["cancelled"]):
        row = job_row(page, pk)
        for column in ("outcome", "cost", "turnaround", "created"):
            on_screen(row.locator(f"td.field-{column}"))
    assert "3/3" not in page.locator("#result_list").inner_text()


def test_the_ledger_list_fits_1400px_with_its_costs_on_screen(admin_page, llmops, rows):
    page = admin_page
    page.goto(f"{llmops.base_url}/admin/billing/ledgerentry/")
    # Three batch answers, two realtime ones, the big charge and its reversal.
    expect(page.locator("#result_list tbody tr")).to_have_count(7)

    fits(page, "admin-ledger-1400")

    big = page.locator(f"#result_list tbody tr:has(a[href$='/ledgerentry/{rows['big']}/change/'])")
    expect(big.locator("td.field-tokens")).to_have_text(
        "1,234,567 in · 98,765 cached · 4,321 cache write · 654,321 out"
    )
    reversal = page.locator(
        f"#result_list tbody tr:has(a[href$='/ledgerentry/{rows['reversal']}/change/'])"
    )
    expect(reversal.locator("td.field-entry")).to_contain_text("reversal")
    for row in page.locator("#result_list tbody tr").all():
        for column in ("entry", "tokens", "cost", "counterfactual"):
            on_screen(row.locator(f"td.field-{column}"))
        for column in ("cost", "counterfactual"):
            assert "E" not in row.locator(f"td.field-{column}").inner_text()  # no 1.2E-7
