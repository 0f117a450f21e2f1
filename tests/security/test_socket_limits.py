"""Issue 19 items 2 and 4 on a real daphne: one socket cannot grow the server's memory or
share of the database. A flood of large messages is closed with daphne's memory bounded; a
flood of small ones gets `rate_limited`, then a close; a message over the size limit is
refused before it is read; a caller has at most LLMOPS_WS_MAX_SOCKETS_PER_CALLER sockets and a
socket at most LLMOPS_WS_MAX_SUBSCRIPTIONS ids; idle `all` subscribers cost one database read
per resync tick between them, not one each; NaN in a socket message is refused naming its
field."""

from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import suppress

import pytest
from websockets.exceptions import ConnectionClosed

from tests.live import conftest as live
from tests.live.test_websockets import receive
from tests.security.socket_stack import (
    Reader,
    cpu_seconds,
    daphne_pid,
    new_key,
    new_keys,
    opened,
    rss_mb,
)

llmops = live.llmops  # the live stack (daphne on a real socket), one per module

MAX_SOCKETS = 20  # LLMOPS_WS_MAX_SOCKETS_PER_CALLER's default
MAX_SUBSCRIPTIONS = 1_000  # LLMOPS_WS_MAX_SUBSCRIPTIONS's default
BURST = 30  # LLMOPS_WS_MESSAGE_BURST's default
RESYNC_S = 2  # LLMOPS_WS_RESYNC_SECONDS on the embedded default (15 with Redis)
WINDOW_S = 6


@pytest.fixture
def enter():
    with opened() as enter:
        yield enter


class PeakRss:
    """daphne's largest VmRSS while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.done = pid, rss_mb(pid), threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


def test_a_flood_of_large_messages_is_closed_and_daphne_memory_stays_bounded(
    llmops, enter, figures
):
    pid = daphne_pid(llmops)
    ws = enter(llmops.ws("/ws/requests/"))
    # ~40 KB: a thousand ids, as the hostile tenant sent 60,612 of.
    message = json.dumps(
        {"type": "subscribe", "request_ids": [str(uuid.uuid4()) for _ in range(1_000)]}
    )
    before = rss_mb(pid)
    sent, closed_by = 0, None
    with PeakRss(pid) as rss:
        deadline = time.monotonic() + 15
        try:
            while sent < 60_612 and time.monotonic() < deadline:
                ws.send(message)
                sent += 1
        except ConnectionClosed as exc:
            closed_by = exc.rcvd.code if exc.rcvd else None
        if closed_by is None:  # the close may arrive while the client is still writing
            try:
                while True:
                    ws.recv(timeout=10)
            except ConnectionClosed as exc:
                closed_by = exc.rcvd.code if exc.rcvd else None
            except TimeoutError:
                pass
    after = rss_mb(pid)
    figures.record(
        "T8",
        "websocket: flood of 40 KB subscribe messages on one socket",
        messages_sent_before_close=sent,
        megabytes_sent=round(sent * len(message) / 1e6, 1),
        close_code=closed_by,
        daphne_rss_before_mb=round(before),
        daphne_rss_peak_mb=round(rss.peak),
        daphne_rss_after_mb=round(after),
    )

    assert closed_by in (1008, 4008), closed_by  # daphne's unread bound, or the rate limit
    assert sent < 60_612
    assert rss.peak - before < 100, (before, rss.peak)
    with llmops.ws("/ws/requests/") as fresh:  # the server is fine, the key still usable
        fresh.send(json.dumps({"type": "subscribe", "all": True}))
        assert receive(fresh)["type"] == "subscribed"


def test_small_messages_past_the_rate_get_rate_limited_then_a_close(llmops, enter, figures):
    ws = enter(llmops.ws("/ws/requests/"))
    reader = Reader(ws)
    # Within the burst every message is answered (an unknown type is an error reply).
    for _ in range(BURST):
        ws.send(json.dumps({"type": "ping"}))
    # Every reply read before the flood: when the server closes on a socket it still has
    # unread data from, its kernel resets the connection, and a reset discards whatever the
    # client had received but not yet read (CI lost 26 of the 30 replies so).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(reader.messages) < BURST:
        time.sleep(0.02)
    assert [m["code"] for _, m in reader.messages] == ["unknown_type"] * BURST
    # Paced so that daphne's unread bound does not trip first: the consumer's limit closes.
    sent = 0
    try:
        for _ in range(10 * BURST):
            ws.send(json.dumps({"type": "ping"}))
            sent += 1
            if sent % 10 == 0:
                time.sleep(0.01)
    except ConnectionClosed:
        pass
    closed = reader.wait_closed(10)
    codes = [m.get("code") for _, m in reader.messages]
    figures.record(
        "T8",
        "websocket: small messages past 10/s (burst 30)",
        answered_within_burst=codes.count("unknown_type"),
        rate_limited_errors=codes.count("rate_limited"),
        close_code=reader.close_code,
    )

    assert codes.count("unknown_type") >= BURST
    assert codes.count("rate_limited") == 1  # told once per run, not once per message
    assert closed and reader.close_code == 4008


def test_a_message_over_the_size_limit_is_refused_before_it_is_read(llmops, enter, figures):
    pid = daphne_pid(llmops)
    ws = enter(llmops.ws("/ws/requests/", max_size=None))
    reader = Reader(ws)
    before = rss_mb(pid)
    with suppress(ConnectionClosed):
        ws.send("x" * (1024 * 1024 + 1))  # a byte over the 1 MB limit
    closed = reader.wait_closed(10)
    figures.record(
        "T8",
        "websocket: one message a byte over the 1 MB limit",
        close_code=reader.close_code,
        daphne_rss_growth_mb=round(rss_mb(pid) - before),
    )

    assert closed and reader.close_code == 1009  # autobahn: message too big
    assert rss_mb(pid) - before < 15


def test_a_caller_past_its_socket_cap_is_told_and_closed(llmops, enter, figures):
    _, raw = new_key(llmops, "socket-cap")
    held = [enter(llmops.ws("/ws/requests/", key=raw)) for _ in range(MAX_SOCKETS)]
    over = Reader(enter(llmops.ws("/ws/stream/", key=raw)))  # both endpoints count
    refusal = over.wait_for("error")
    closed = over.wait_closed(10)
    held[0].close()
    # The freed place is usable once the server has heard of the close.
    deadline, reopened = time.monotonic() + 5, None
    while reopened is None and time.monotonic() < deadline:
        again = enter(llmops.ws("/ws/requests/", key=raw))
        again.send(json.dumps({"type": "subscribe", "all": True}))
        if receive(again, timeout=5)["type"] == "subscribed":
            reopened = again
    figures.record(
        "T8",
        f"websocket: socket {MAX_SOCKETS + 1} of one key",
        error_code=refusal.get("code"),
        close_code=over.close_code,
        a_freed_place_is_reusable=reopened is not None,
    )

    assert refusal["code"] == "too_many_sockets"
    assert closed and over.close_code == 4008
    assert reopened is not None


def test_a_socket_follows_at_most_the_subscription_cap(llmops, enter, figures):
    ws = enter(llmops.ws("/ws/requests/"))
    ids = [str(uuid.uuid4()) for _ in range(MAX_SUBSCRIPTIONS + 1)]
    ws.send(json.dumps({"type": "subscribe", "request_ids": ids}))
    refused = receive(ws)
    ws.send(json.dumps({"type": "subscribe", "request_ids": ids[:MAX_SUBSCRIPTIONS]}))
    within = receive(ws)
    figures.record(
        "T8",
        f"websocket: subscribe to {MAX_SUBSCRIPTIONS + 1} ids",
        answer=refused["type"],
        field=refused.get("field"),
    )

    assert refused["type"] == "error" and refused["field"] == "request_ids"
    assert str(MAX_SUBSCRIPTIONS) in refused["message"]
    assert within["type"] == "subscribed"  # none found, but the size was accepted


def test_idle_all_subscribers_cost_one_read_per_tick_not_one_each(llmops, enter, figures):
    pid = daphne_pid(llmops)
    keys = [raw for _, raw in new_keys(llmops, [f"idle-{i}" for i in range(5)])]
    readers = []
    for key in keys:
        for _ in range(MAX_SOCKETS):
            ws = enter(llmops.ws("/ws/requests/", key=key))
            ws.send(json.dumps({"type": "subscribe", "all": True}))
            readers.append(Reader(ws))
    for reader in readers:
        reader.wait_for("subscribed")
    cpu = cpu_seconds(pid)
    time.sleep(WINDOW_S)  # measuring idle cost over a span: nothing to wait for
    per_tick = (cpu_seconds(pid) - cpu) / WINDOW_S * RESYNC_S
    pushed = sum(1 for r in readers for _, m in r.messages if m["type"] == "status")
    figures.record(
        "T8",
        f"websocket: {len(readers)} idle `all` subscribers",
        # Per 2 s, the embedded default's resync tick (15 s with Redis).
        daphne_cpu_s_per_2_s=round(per_tick, 4),
        status_pushes_while_idle=pushed,
    )

    assert all(r.close_code is None for r in readers)
    assert pushed == 0
    # One subscriber's read each was ~2 ms of daphne's CPU: 100 of them, 0.2 s a tick.
    assert per_tick < 0.05, per_tick


@pytest.mark.parametrize(
    ("raw_field", "field"),
    [('"max_tokens": NaN', "max_tokens"), ('"temperature": 1e999', "temperature")],
)
def test_a_non_finite_number_in_a_socket_message_is_refused_naming_its_field(
    llmops, enter, raw_field, field
):
    ws = enter(llmops.ws("/ws/stream/"))
    fields = {"type": "start", "workload": "product-search", "max_tokens": 5, "temperature": 1}
    del fields[field]
    ws.send(
        json.dumps(fields)[:-1]
        + ', "messages": [{"role": "user", "content": "hi"}], '
        + raw_field
        + "}"
    )
    error = receive(ws)

    assert error["type"] == "error" and error["field"] == field, error
    assert "finite" in error["message"]
