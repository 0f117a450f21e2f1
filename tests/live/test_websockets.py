"""/ws/stream/ and /ws/requests/ with the stack up, through a real websocket client."""

from __future__ import annotations

import json
import random
import time
from decimal import Decimal

import pytest
from websockets.exceptions import InvalidStatus


def receive(ws, timeout: float = 30) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def start(ws, prompt: str, **fields) -> None:
    ws.send(
        json.dumps(
            {
                "type": "start",
                "workload": "product-search",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 60,
                **fields,
            }
        )
    )


def until(ws, *types: str) -> tuple[list[dict], dict]:
    """Messages up to the first of `types`: (those before it, it)."""
    seen = []
    while True:
        message = receive(ws)
        if message["type"] in types:
            return seen, message
        seen.append(message)


def status_of(notes, request_id: str, timeout: float = 15) -> dict:
    """The next status push about `request_id` (a team subscription hears of others too)."""
    deadline = time.monotonic() + timeout
    while True:
        message = receive(notes, timeout=max(deadline - time.monotonic(), 0.1))
        if message["type"] == "status" and message["request_id"] == request_id:
            return message


def ledger_entries(llmops, request_id: str) -> list[dict]:
    status, body = llmops.api("GET", f"/api/v1/ledger?request={request_id}&limit=500")
    assert status == 200, body
    return [e for e in body["results"] if e["request"] == request_id]


def open_holds(llmops, request_ids: list[str]) -> int:
    """Held budget holds of these requests, read from the server's database."""
    return int(
        llmops.shell(
            "from billing.models import Hold; "
            f"print(Hold.objects.filter(request_id__in={request_ids!r}, status='held').count())"
        )
    )


def test_a_stream_arrives_in_order_and_done_matches_the_ledger(llmops, sim):
    sim.config(tokens_per_s=200, output_tokens=60)
    with llmops.ws("/ws/stream/") as ws:
        start(ws, "Which tent survives a storm?")
        started = receive(ws)
        assert started["type"] == "started"
        assert (started["mode"], started["model"]) == ("stream", "gpt-4o-mini")
        assert set(started) == {
            "type",
            "request_id",
            "mode",
            "provider",
            "model",
            "reason",
            "output_usd_per_mtok",
            "prompt_cost_floor_usd",
        }
        deltas, arrivals = [], []
        while (message := receive(ws))["type"] == "delta":
            deltas.append(message)
            arrivals.append(time.monotonic())
        done = message

    assert done["type"] == "done"
    # Frames leave as tokens arrive (60 tokens paced over ~0.3 s), not in one burst at the end.
    assert arrivals[-1] - arrivals[0] > 0.15
    assert len(deltas) > 5
    request = llmops.api("GET", f"/api/v1/requests/{started['request_id']}")[1]
    assert "".join(d["text"] for d in deltas) == request["output"]
    assert request["source"] == "websocket"
    assert done["request_id"] == started["request_id"]
    assert done["usage"] == request["usage"] and done["usage"]["output_tokens"] > 5
    [entry] = ledger_entries(llmops, done["request_id"])
    assert (entry["kind"], entry["mode"]) == ("charge", "stream")
    assert Decimal(done["cost_usd"]) == Decimal(entry["cost_usd"]) > 0
    assert (done["provider"], done["model"], done["estimated"]) == (
        "sim-openai",
        "gpt-4o-mini",
        False,
    )
    assert done["ttft_ms"] >= 0 and done["tokens_per_s"] > 0


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])
def test_a_streamed_tool_call_ends_in_done_with_its_tool_calls(llmops, sim, model):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    with llmops.ws("/ws/stream/") as ws:
        start(ws, f"Weather in Bergen ({model})? Use get_weather.", model=model, tools=[tool])
        _, done = until(ws, "done", "error")

    assert done["type"] == "done", done
    assert (done["model"], done["finish_reason"]) == (model, "tool_calls")
    [call] = done["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert set(json.loads(call["function"]["arguments"])) <= {"city"}


def test_started_prices_a_running_cost_that_done_agrees_with(llmops, sim):
    """What a client shows while tokens arrive (the playground does this) agrees with `done`:
    the rate deltas arrived at after the first, and a cost from `started`'s floor prices."""
    sim.config(tokens_per_s=60, ttft_ms=100, output_tokens=120)
    with llmops.ws("/ws/stream/") as ws:
        start(ws, "Which stove boils water fastest at altitude?", max_tokens=300)
        started = receive(ws)
        arrivals = []
        while (message := receive(ws))["type"] == "delta":
            arrivals.append(time.monotonic())
        done = message
    assert done["type"] == "done" and done["usage"]["output_tokens"] == 120
    # Decimal strings: the output rate in $/Mtok, and the least the prompt can cost.
    assert Decimal(started["output_usd_per_mtok"]) == Decimal("0.6")  # gpt-4o-mini's
    floor = Decimal(started["prompt_cost_floor_usd"])
    assert 0 < floor <= Decimal(done["cost_usd"]) - 120 * Decimal("0.6") / 1_000_000

    seen = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert abs(seen - done["tokens_per_s"]) <= done["tokens_per_s"] / 10, (seen, done)
    assert abs(done["tokens_per_s"] - 60) <= 6, done
    running = [floor + n * Decimal("0.6") / 1_000_000 for n in range(1, len(arrivals) + 1)]
    assert max(running) <= Decimal(done["cost_usd"])


def test_stop_cancels_upstream_and_bills_one_estimate(llmops, sim):
    sim.config(tokens_per_s=20)
    with llmops.ws("/ws/stream/") as ws:
        start(ws, "Tell me a long story about boots.", max_tokens=400)
        started = receive(ws)
        assert receive(ws)["type"] == "delta"
        ws.send(json.dumps({"type": "stop"}))
        _, stopped = until(ws, "stopped")
        # The socket is still usable: another start streams.
        sim.config(tokens_per_s=0)
        start(ws, "And a short one?")
        assert receive(ws)["type"] == "started"
        until(ws, "done")

    assert stopped["request_id"] == started["request_id"]
    assert (stopped["status"], stopped["estimated"]) == ("cancelled", True)
    [entry] = ledger_entries(llmops, started["request_id"])
    assert entry["kind"] == "estimate"
    assert Decimal(stopped["cost_usd"]) == Decimal(entry["cost_usd"]) > 0
    assert open_holds(llmops, [started["request_id"]]) == 0


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("{not json", ""),
        ("[1, 2]", ""),
        (json.dumps({"type": "dance"}), "type"),
        (json.dumps({"workload": "product-search"}), "type"),
        (
            json.dumps(
                {
                    "type": "start",
                    "workload": "nope",
                    "messages": [{"role": "user", "content": "x"}],
                }
            ),
            "workload",
        ),
        (
            json.dumps(
                {
                    "type": "start",
                    "workload": "dashboard-qa",  # globex's: foreign to the acme key
                    "messages": [{"role": "user", "content": "x"}],
                }
            ),
            "workload",
        ),
        (
            json.dumps(
                {
                    "type": "start",
                    "workload": "product-search",
                    "messages": [{"role": "user", "content": "x"}],
                    "max_tokens": 0,
                }
            ),
            "max_tokens",
        ),
        (
            json.dumps(
                {
                    "type": "start",
                    "workload": "product-search",
                    "messages": [{"role": "user", "content": "x"}],
                    "max_tokens": "12",
                }
            ),
            "max_tokens",
        ),
        (
            json.dumps(
                {
                    "type": "start",
                    "workload": "product-search",
                    "messages": [{"role": "user", "content": "x"}],
                    "max_tokens": 10_000_000,
                }
            ),
            "max_tokens",
        ),
        (
            json.dumps({"type": "start", "workload": "product-search", "messages": []}),
            "messages",
        ),
        (json.dumps({"type": "stop"}), ""),
    ],
)
def test_bad_messages_get_an_error_and_the_socket_stays_usable(llmops, sim, message, field):
    _, before = llmops.api("GET", "/api/v1/ledger?limit=1")
    with llmops.ws("/ws/stream/") as ws:
        ws.send(message)
        error = receive(ws)
        assert error["type"] == "error" and error["message"]
        assert error.get("field", "") == field
        start(ws, "Still there?")
        assert receive(ws)["type"] == "started"
        _, done = until(ws, "done")
    _, after = llmops.api("GET", "/api/v1/ledger?limit=1")
    # Only the good start was billed.
    assert after["count"] == before["count"] + 1
    assert after["results"][0]["request"] == done["request_id"]


def test_a_key_in_the_query_string_or_none_at_all_is_refused(llmops):
    for path, key in (("/ws/stream/", None), (f"/ws/stream/?key={llmops.api_key}", None)):
        with pytest.raises(InvalidStatus) as refused:
            llmops.ws(path, key=key)
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        llmops.ws("/ws/requests/", key="llm_not-a-real-key-000000")
    assert refused.value.response.status_code == 403


def test_a_foreign_origin_is_refused_even_with_a_session(llmops):
    cookie = llmops.login()
    with pytest.raises(InvalidStatus) as refused:
        llmops.ws("/ws/stream/", key=None, origin="http://evil.example", headers={"Cookie": cookie})
    assert refused.value.response.status_code == 403
    # A session without any Origin is not a browser: it needs a key.
    with pytest.raises(InvalidStatus):
        llmops.ws("/ws/stream/", key=None, headers={"Cookie": cookie})


def test_a_browser_session_streams_and_its_requests_are_its_users(llmops, sim):
    cookie = llmops.login()
    # The page's own origin: scheme, host and port of the server.
    origin = llmops.base_url
    with llmops.ws("/ws/stream/", key=None, origin=origin, headers={"Cookie": cookie}) as ws:
        start(ws, "What is a good rain jacket?", team="acme")
        started = receive(ws)
        _, done = until(ws, "done")
    assert done["status"] == "completed"
    request = llmops.api("GET", f"/api/v1/requests/{started['request_id']}")[1]
    assert request["source"] == "websocket" and request["status"] == "completed"


def test_a_deferred_workload_is_queued_and_its_cancellation_is_pushed(llmops, sim):
    with llmops.ws("/ws/requests/") as notes, llmops.ws("/ws/stream/") as ws:
        start(ws, "Summarise ticket 42.", workload="ticket-summaries")
        queued = receive(ws)
        assert queued["type"] == "queued" and queued["deadline"]
        notes.send(json.dumps({"type": "subscribe", "request_ids": [queued["request_id"]]}))
        assert receive(notes)["type"] == "subscribed"
        current = receive(notes)
        assert (current["type"], current["status"]) == ("status", "queued")

        status, _ = llmops.api("POST", f"/api/v1/requests/{queued['request_id']}/cancel")
        assert status == 200
        pushed = receive(notes, timeout=10)
    assert (pushed["request_id"], pushed["status"]) == (queued["request_id"], "cancelled")
    assert pushed["request"]["workload"] == "ticket-summaries"
    assert ledger_entries(llmops, queued["request_id"]) == []


def test_all_team_requests_are_pushed_including_changes_made_by_another_process(llmops, sim):
    with llmops.ws("/ws/requests/") as notes:
        notes.send(json.dumps({"type": "subscribe", "all": True}))
        assert receive(notes) == {"type": "subscribed", "request_ids": [], "all": True}
        status, queued = llmops.api(
            "POST",
            "/api/v1/requests",
            {"workload": "ticket-summaries", "messages": [{"role": "user", "content": "t 7"}]},
        )
        assert status == 202
        assert status_of(notes, queued["id"])["status"] == "queued"
        # A django-q2 worker is another process: on the in-memory channel layer its change
        # reaches this socket by the catch-up read of updated_at.
        llmops.shell(
            "from routing.models import Request; from batches.services import request_cancel; "
            f"request_cancel(request=Request.objects.get(pk='{queued['id']}'))"
        )
        assert status_of(notes, queued["id"])["status"] == "cancelled"


def test_an_idle_subscriber_still_hears_of_changes(llmops, sim):
    """Idle for longer than a channel layer's blocking read (5 s on Redis): the socket must
    neither drop nor miss the next change."""
    status, queued = llmops.api(
        "POST",
        "/api/v1/requests",
        {"workload": "ticket-summaries", "messages": [{"role": "user", "content": "t 9"}]},
    )
    assert status == 202
    with llmops.ws("/ws/requests/") as notes:
        notes.send(json.dumps({"type": "subscribe", "request_ids": [queued["id"]]}))
        assert receive(notes)["type"] == "subscribed"
        assert status_of(notes, queued["id"])["status"] == "queued"
        time.sleep(7)
        assert llmops.api("POST", f"/api/v1/requests/{queued['id']}/cancel")[0] == 200
        assert status_of(notes, queued["id"], timeout=5)["status"] == "cancelled"


def test_subscribing_to_a_foreign_or_unknown_request_is_an_error(llmops, sim):
    status, other = llmops.api(
        "POST",
        "/api/v1/requests",
        {"workload": "ticket-summaries", "messages": [{"role": "user", "content": "t 8"}]},
    )
    assert status == 202
    with llmops.ws("/ws/requests/") as notes:
        notes.send(json.dumps({"type": "subscribe", "request_ids": ["not-a-uuid"]}))
        assert receive(notes)["field"].startswith("request_ids")
        unknown = "00000000-0000-4000-8000-000000000000"
        notes.send(json.dumps({"type": "subscribe", "request_ids": [unknown, other["id"]]}))
        subscribed = receive(notes)
        assert subscribed["request_ids"] == [other["id"]]
        error = receive(notes)
        assert error["type"] == "error" and unknown in error["message"]


DISCONNECT_TRIALS = 50


def test_every_mid_stream_disconnect_leaves_one_ledger_entry_and_no_open_hold(llmops, sim):
    # Short answers finish within the drain bound (billed exactly); long ones are cut (an
    # estimate). Both must leave exactly one entry.
    sim.config(tokens_per_s=150, output_tokens=900)
    rng = random.Random(5)
    request_ids = []
    for trial in range(DISCONNECT_TRIALS):
        with llmops.ws("/ws/stream/") as ws:
            start(ws, f"Trial {trial}: describe a boot.", max_tokens=rng.choice([30, 100, 900]))
            started = receive(ws)
            request_ids.append(started["request_id"])
            for _ in range(rng.randrange(0, 12)):
                if receive(ws)["type"] != "delta":
                    break
            ws.close_socket()  # no closing handshake: the client just vanishes
    deadline = time.monotonic() + 60
    outcomes = {}
    while time.monotonic() < deadline:
        outcomes = {rid: llmops.api("GET", f"/api/v1/requests/{rid}")[1] for rid in request_ids}
        if all(r["status"] in ("completed", "cancelled") for r in outcomes.values()):
            break
        time.sleep(0.5)
    for rid, request in outcomes.items():
        assert request["status"] in ("completed", "cancelled"), request
        entries = ledger_entries(llmops, rid)
        assert len(entries) == 1, (request, entries)
        assert entries[0]["kind"] == ("charge" if request["status"] == "completed" else "estimate")
    statuses = {r["status"] for r in outcomes.values()}
    assert statuses == {"completed", "cancelled"}, "both outcomes should have been exercised"
    assert open_holds(llmops, request_ids) == 0
