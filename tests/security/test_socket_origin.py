"""Issue 19 item 3 in a real browser: a page served from another port of the same host, open in
a browser signed in to llmops, cannot open a websocket on the visitor's session (the Origin
differs in port, so it is another origin, as Django's CSRF check has it); the same script from
llmops's own pages connects and subscribes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import sync_playwright

from tests.live import conftest as live
from tests.live.stack import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.live.test_playground_browser import CHROMIUM, CHROMIUM_ARGS

llmops = live.llmops  # the live stack (daphne on a real socket), one per module

# Opens the socket on the session cookie, asks for every team's requests, and reports what
# happened: the events seen and the close code.
TRY_SOCKET = """url => new Promise(resolve => {
    const events = [];
    const ws = new WebSocket(url);
    ws.onopen = () => {
        events.push("open");
        ws.send(JSON.stringify({type: "subscribe", all: true}));
    };
    ws.onmessage = e => { events.push(JSON.parse(e.data).type); ws.close(); };
    ws.onerror = () => events.push("error");
    ws.onclose = e => resolve({events, code: e.code});
    setTimeout(() => resolve({events, code: null}), 10000);
})"""


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>Another site</title><p>Nothing to see."
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def other_site() -> Iterator[str]:
    """A page on another port of 127.0.0.1: same host as llmops, another origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def signed_in_page(llmops):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{llmops.base_url}/accounts/login/")
            page.fill("#id_username", ADMIN_USERNAME)
            page.fill("#id_password", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{llmops.base_url}/playground/")
            yield page
        finally:
            browser.close()


def test_a_page_on_another_port_cannot_use_the_session_on_a_websocket(
    llmops, signed_in_page, other_site, figures
):
    socket_url = llmops.ws_url + "/ws/requests/"
    page = signed_in_page
    page.goto(f"{other_site}/")
    foreign = page.evaluate(TRY_SOCKET, socket_url)
    page.goto(f"{llmops.base_url}/playground/")
    own = page.evaluate(TRY_SOCKET, socket_url)
    figures.record(
        "T8",
        "websocket from a page on another port of the same host, signed-in browser",
        other_origin_events=foreign["events"],
        own_origin_events=own["events"],
    )

    assert "open" not in foreign["events"] and "subscribed" not in foreign["events"]
    assert foreign["code"] == 1006  # the handshake was refused (403)
    assert own["events"][:2] == ["open", "subscribed"]
