"""The playground in a real browser: Debian's headless Chromium driven by Playwright (no
downloaded browser), against the running stack."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.live.conftest import ADMIN_PASSWORD, ADMIN_USERNAME

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling Google's hosts, which this
# offline machine refuses (platform notes).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, llmops) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{llmops.base_url}/playground/")
    # Not signed in: the login page, then back to the playground.
    expect(page).to_have_url(f"{llmops.base_url}/accounts/login/?next=/playground/")
    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{llmops.base_url}/playground/")
    expect(page.locator("#connection")).to_have_text("connected")
    yield page
    context.close()


def shown_usd(value: str) -> str:
    """The page's rendering of a decimal string: trailing zeros cut, at least two places."""
    whole, _, frac = value.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"${whole}.{frac}"


# Samples the answer's length on every animation frame until the request completes.
WATCH_PAINTS = """() => {
  window.paints = [];
  const sample = () => {
    window.paints.push(document.getElementById("output").textContent.length);
    if (document.getElementById("status").textContent !== "completed") {
      requestAnimationFrame(sample);
    }
  };
  requestAnimationFrame(sample);
}"""


def test_a_prompt_streams_into_the_page_and_ends_with_its_cost(page, llmops, sim):
    sim.config(tokens_per_s=40, output_tokens=80)
    page.select_option("#workload", "acme/product-search")
    page.fill("#prompt", "Which sleeping bag for minus ten degrees?")
    page.evaluate(WATCH_PAINTS)
    page.click("#send")

    expect(page.locator("#status")).to_have_text("completed")
    paints = page.evaluate("window.paints")
    growing = sorted({n for n in paints if n > 0})
    final = len(page.locator("#output").text_content())
    # The text grew over several paints before it was complete.
    assert len([n for n in growing if n < final]) >= 3, paints

    status, listing = llmops.api("GET", "/api/v1/requests?workload=product-search&limit=1")
    assert status == 200
    request = listing["results"][0]
    assert request["output"] == page.locator("#output").text_content()
    assert Decimal(request["cost_usd"]) > 0
    expect(page.locator("#cost")).to_have_text(shown_usd(request["cost_usd"]))
    assert page.locator("#ttft").text_content().endswith(" ms")
    # The request is listed among the recent ones, kept current by /ws/requests/.
    row = page.locator(f"#recent tr[data-id='{request['id']}']")
    expect(row.locator("td.status")).to_have_text("completed")


@pytest.mark.parametrize("model", ["", "claude-haiku-4-5"])
def test_a_prompt_streams_through_the_responses_api(page, llmops, sim, model):
    """The playground as an application: POST /v1/responses with an API key, X-Workload and
    the model, the answer read from the Responses events as they stream; then the ledger's
    cost from the request's status push."""
    sim.config(tokens_per_s=40, output_tokens=60)
    page.select_option("#workload", "acme/product-search")
    page.select_option("#via", "responses")
    expect(page.locator("#api_key")).to_be_visible()
    page.fill("#api_key", llmops.api_key)
    if model:
        page.select_option("#model", model)
    page.fill("#prompt", f"Which stove for a winter trip? ({model or 'chain'})")
    page.evaluate(WATCH_PAINTS)
    with page.expect_response("**/v1/responses") as answered:
        page.click("#send")
    request_id = answered.value.headers["x-request-id"]

    expect(page.locator("#status")).to_have_text("completed")
    assert len({n for n in page.evaluate("window.paints") if n > 0}) >= 3
    status, request = llmops.api("GET", f"/api/v1/requests/{request_id}")
    assert status == 200, request
    assert request["kind"] == "responses" and request["source"] == "openai"
    assert request["model"] == (model or "gpt-4o-mini")
    assert request["output"] == page.locator("#output").text_content() != ""
    expect(page.locator("#cost")).to_have_text(shown_usd(request["cost_usd"]))
    expect(page.locator("#answer-model")).to_contain_text(request["model"])
    # The key stays in the tab (sessionStorage), not in a cookie or the page.
    assert page.evaluate("sessionStorage.getItem('llmops-playground-key')") == llmops.api_key


def test_a_wrong_key_through_the_responses_api_is_shown(page, llmops, sim):
    page.select_option("#via", "responses")
    page.fill("#api_key", "llm_not-a-key")
    page.fill("#prompt", "Anything?")
    page.click("#send")
    expect(page.locator("#status")).to_have_text("refused")
    expect(page.locator("#error")).to_contain_text("Invalid or revoked API key")


# Reads the live figures every 50 ms while the answer streams, with how much of it was there.
WATCH_FIGURES = """() => {
  window.figures = [];
  const text = (id) => document.getElementById(id).textContent;
  let seen = false;
  const timer = setInterval(() => {
    if (text("status").startsWith("streaming")) {
      seen = true;
      window.figures.push({chars: text("output").length, tps: text("tps"), cost: text("cost")});
    } else if (seen) {
      clearInterval(timer);
    }
  }, 50);
}"""


def shown_number(text: str) -> Decimal:
    """The figure in a counter's text: "≈ 59.8" -> 59.8, "≈ $0.0000123" -> 0.0000123."""
    return Decimal(text.removeprefix("≈").strip().removeprefix("$").split(" ")[0])


@pytest.mark.parametrize(
    ("workload", "model"),
    [
        ("acme/product-search", ""),  # gpt-4o-mini, as the policy decides
        # Anthropic's prices: a cache write dearer than input, a cached read far cheaper.
        ("globex/dashboard-qa", "claude-sonnet-4-6"),
    ],
)
def test_the_live_figures_agree_with_the_final_ones(page, llmops, sim, workload, model):
    # A realistic rate: 150 tokens over about 2.5 s.
    sim.config(tokens_per_s=60, ttft_ms=200, output_tokens=150)
    frames = []
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda frame: frames.append(frame)),
    )
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    page.select_option("#workload", workload)
    page.select_option("#model", model)
    page.fill("#max_tokens", "400")
    page.fill("#prompt", "Which sleeping bag for minus ten degrees, and why?")
    page.evaluate(WATCH_FIGURES)
    page.click("#send")
    expect(page.locator("#status")).to_have_text("completed")

    messages = [json.loads(f) for f in frames if isinstance(f, str) and f.startswith("{")]
    [started] = [m for m in messages if m.get("type") == "started"]
    [done] = [m for m in messages if m.get("type") == "done"]
    assert done["model"] == started["model"] == (model or "gpt-4o-mini")
    assert done["usage"]["output_tokens"] == 150
    # The simulator streamed at 60 tokens/s, and the final figure says so.
    assert 54 <= done["tokens_per_s"] <= 66, done
    final_tps = shown_number(page.locator("#tps").text_content())
    assert final_tps == Decimal(str(done["tokens_per_s"]))
    final_cost = Decimal(done["cost_usd"])
    assert page.locator("#cost").text_content() == shown_usd(done["cost_usd"])

    figures = page.evaluate("window.figures")
    answer = len(page.locator("#output").text_content())
    live = [f for f in figures if f["tps"].startswith("≈")]
    late = [f for f in live if f["chars"] >= answer / 2]
    assert len(late) >= 5, figures
    for sample in late:
        tps = shown_number(sample["tps"])
        assert abs(tps - final_tps) <= final_tps / 10, (sample, final_tps)
        assert abs(tps - Decimal(str(done["tokens_per_s"]))) <= final_tps / 10, (sample, done)
    costs = [shown_number(f["cost"]) for f in live if f["cost"].startswith("≈")]
    assert len(costs) >= 10, figures
    assert max(costs) <= final_cost, (costs, final_cost)
    # A real running figure, not a zero that is trivially below: the last one came close.
    assert costs[-1] >= final_cost * Decimal("0.8"), (costs[-1], final_cost)
    assert costs == sorted(costs)


def test_stop_ends_the_stream_with_an_estimated_cost(page, llmops, sim):
    sim.config(tokens_per_s=15, output_tokens=800)
    page.select_option("#workload", "acme/product-search")
    page.fill("#max_tokens", "800")
    page.fill("#prompt", "Write a very long essay on tents.")
    page.click("#send")
    expect(page.locator("#status")).to_have_text("streaming (stream)")
    expect(page.locator("#output")).not_to_be_empty()
    # A running estimate from the page's rates while tokens arrive.
    expect(page.locator("#cost")).to_contain_text("≈ $")
    page.click("#stop")
    # Stopping settles the ledger in a database write, which can queue behind the
    # scheduler's tick on a loaded machine (CI once took over 15 s on PostgreSQL); the
    # stream itself would run ~50 s more, so a stop that did nothing still fails here.
    expect(page.locator("#status")).to_have_text("stopped", timeout=30_000)
    expect(page.locator("#cost")).to_contain_text("(estimate)")
    expect(page.locator("#send")).to_be_enabled()


def test_a_deferred_workload_shows_its_ticket_and_follows_it(page, llmops, sim):
    page.select_option("#workload", "acme/ticket-summaries")
    page.fill("#prompt", "Summarise ticket 314.")
    page.click("#send")
    expect(page.locator("#status")).to_have_text("queued")
    expect(page.locator("#ticket")).to_be_visible()
    ticket = page.locator("#ticket-id").text_content()

    status, _ = llmops.api("POST", f"/api/v1/requests/{ticket}/cancel")
    assert status == 200
    # Pushed over /ws/requests/: no reload, no polling by the page.
    expect(page.locator("#status")).to_have_text("cancelled")
    expect(page.locator("#ticket")).to_be_hidden()
    expect(page.locator(f"#recent tr[data-id='{ticket}'] td.status")).to_have_text("cancelled")


@pytest.mark.parametrize("width", [390, 1280])
def test_the_playground_fits_phone_and_desktop_widths(browser, page, width):
    page.set_viewport_size({"width": width, "height": 900})
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    for selector in ("#workload", "#prompt", "#send", "#output", ".table-wrap"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, selector
