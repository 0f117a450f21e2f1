"""Issue 19 item 1 on a real daphne: a websocket lives no longer than its credentials. A key
revoked in the admin closes its stream and its `all` subscriber at once, with nothing sent
after the revocation's response; the stream in flight is settled as if the client had left;
a logout closes that browser session's sockets and no other; a key revoked or a user
deactivated by another process (a management command) is caught by the periodic re-read."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import InvalidStatus

from tests.live import conftest as live
from tests.live.test_websockets import ledger_entries, open_holds, start
from tests.security.socket_stack import (
    Reader,
    admin_revoke,
    cookie_value,
    new_key,
    new_user,
    opened,
    post_form,
)

llmops = live.llmops  # the live stack (daphne on a real socket), one per module

CLOSE_CREDENTIALS_ENDED = 4401
# Seconds between revocation and close that count as "at once" for the signal path, and the
# bound of the re-read path (LLMOPS_WS_AUTH_RECHECK_SECONDS, 2 s, plus a read's margin).
AT_ONCE_S = 1.5
RECHECK_BOUND_S = 5


@pytest.fixture
def enter():
    with opened() as enter:
        yield enter


def subscribed_to_all(enter, llmops, key: str | None, **kwargs) -> Reader:
    ws = enter(llmops.ws("/ws/requests/", key=key, **kwargs))
    reader = Reader(ws)
    ws.send(json.dumps({"type": "subscribe", "all": True}))
    assert reader.wait_for("subscribed")["all"] is True
    return reader


def revoke_command(key_id: int) -> str:
    """The code that revokes key `key_id` in another process (`Llmops.shell`); prints True."""
    return (
        "from routing.models import ApiKey; from routing.keys import api_key_revoke; "
        f"print(api_key_revoke(key=ApiKey.objects.get(pk={key_id})))"
    )


def test_a_key_revoked_in_the_admin_closes_its_sockets_at_once_and_settles_the_stream(
    llmops, sim, figures, enter
):
    key_id, raw = new_key(llmops, "revoked-in-admin")
    sim.config(tokens_per_s=20, ttft_ms=0, output_tokens=300)  # a 15 s answer
    notes = subscribed_to_all(enter, llmops, raw)
    stream_ws = enter(llmops.ws("/ws/stream/", key=raw))
    stream = Reader(stream_ws)
    start(stream_ws, "Describe a rain jacket at length.", max_tokens=300)
    request_id = stream.wait_for("started")["request_id"]
    stream.wait_for("delta")
    cookie = llmops.login()

    admin_revoke(llmops, cookie, key_id)
    revoked = time.monotonic()
    closed = stream.wait_closed(10) and notes.wait_closed(10)
    after = stream.after(revoked) + notes.after(revoked)
    with pytest.raises(InvalidStatus) as refused:
        llmops.ws("/ws/stream/", key=raw)
    figures.record(
        "T8",
        "websocket: key revoked in the admin mid-stream",
        # From the admin's response (negative: closed before the response arrived).
        stream_closed_after_s=round(stream.closed_at - revoked, 3) if closed else None,
        subscriber_closed_after_s=round(notes.closed_at - revoked, 3) if closed else None,
        close_codes=[stream.close_code, notes.close_code],
        messages_after_revocation=len(after),
        new_socket_with_the_key=refused.value.response.status_code,
    )

    assert closed
    assert (stream.close_code, notes.close_code) == (CLOSE_CREDENTIALS_ENDED,) * 2
    assert after == []
    assert stream.closed_at - revoked < AT_ONCE_S and notes.closed_at - revoked < AT_ONCE_S
    assert refused.value.response.status_code == 403
    # Settled as a client that left: within the drain bound, then one ledger entry, no hold.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        request = llmops.api("GET", f"/api/v1/requests/{request_id}")[1]
        if request["status"] in ("completed", "cancelled"):
            break
        time.sleep(0.2)
    assert request["status"] in ("completed", "cancelled"), request
    assert len(ledger_entries(llmops, request_id)) == 1
    assert open_holds(llmops, [request_id]) == 0


def test_logout_closes_that_sessions_socket_and_not_the_users_other_session(llmops, figures, enter):
    new_user(llmops, "sock-logout", "sock-logout-pw-9f3k")
    leaving = llmops.login("sock-logout", "sock-logout-pw-9f3k")
    staying = llmops.login("sock-logout", "sock-logout-pw-9f3k")
    origin = llmops.base_url
    a = subscribed_to_all(enter, llmops, None, origin=origin, headers={"Cookie": leaving})
    b = subscribed_to_all(enter, llmops, None, origin=origin, headers={"Cookie": staying})

    assert post_form(llmops, "/accounts/logout/", leaving, {}) == 302
    logged_out = time.monotonic()
    closed = a.wait_closed(10)
    b.ws.send(json.dumps({"type": "subscribe", "all": True}))
    still_served = len([m for _, m in b.messages if m["type"] == "subscribed"])
    deadline = time.monotonic() + 5
    while still_served < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        still_served = len([m for _, m in b.messages if m["type"] == "subscribed"])
    figures.record(
        "T8",
        "websocket: browser logout",
        closed_after_s=round(a.closed_at - logged_out, 3) if closed else None,
        close_code=a.close_code,
        messages_after_logout=len(a.after(logged_out)),
        other_session_still_served=still_served == 2,
    )

    assert closed and a.close_code == CLOSE_CREDENTIALS_ENDED
    assert a.closed_at - logged_out < AT_ONCE_S
    assert a.after(logged_out) == []
    assert still_served == 2
    with pytest.raises(InvalidStatus):
        llmops.ws("/ws/requests/", key=None, origin=origin, headers={"Cookie": leaving})


@pytest.mark.parametrize(
    "change",
    ["key revoked", "user deactivated", "password changed", "session deleted"],
)
def test_a_change_made_by_another_process_closes_the_socket_within_the_recheck(
    llmops, change, figures, enter
):
    """A management command (another process) writes the change: no signal reaches daphne
    on the in-memory channel layer, so the periodic re-read must (on Redis the group message
    arrives first)."""
    user = f"sock-{change.split()[0]}"
    if change == "key revoked":
        key_id, raw = new_key(llmops, "revoked-by-command")
        socket = subscribed_to_all(enter, llmops, raw)
        code = revoke_command(key_id)
    else:
        new_user(llmops, user, "sock-other-process-pw-7d2q")
        cookie = llmops.login(user, "sock-other-process-pw-7d2q")
        socket = subscribed_to_all(
            enter, llmops, None, origin=llmops.base_url, headers={"Cookie": cookie}
        )
        get = (
            "from django.contrib.auth.models import User; "
            f"u = User.objects.get(username={user!r}); "
        )
        session_key = cookie_value(cookie, "sessionid")
        code = {
            "user deactivated": get + "u.is_active = False; u.save(); print(True)",
            "password changed": get + "u.set_password('a-new-pw-0k2j'); u.save(); print(True)",
            "session deleted": "from django.contrib.sessions.models import Session; "
            f"print(Session.objects.filter(session_key={session_key!r}).delete()[0] == 1)",
        }[change]

    assert llmops.shell(code) == "True"
    changed = time.monotonic()
    closed = socket.wait_closed(RECHECK_BOUND_S + 3)
    figures.record(
        "T8",
        f"websocket: {change} by another process",
        # From the command's exit (it boots Django first): negative if closed before it.
        closed_after_command_exit_s=round(socket.closed_at - changed, 3) if closed else None,
        close_code=socket.close_code,
        messages_after=len(socket.after(changed)),
    )

    assert closed and socket.close_code == CLOSE_CREDENTIALS_ENDED
    assert socket.closed_at - changed < RECHECK_BOUND_S
    assert socket.after(changed) == []


def test_a_socket_whose_key_another_process_revoked_is_pushed_nothing_before_it_closes(
    llmops, figures, enter
):
    """Between another process's revocation and the periodic re-read that closes the socket
    (up to LLMOPS_WS_AUTH_RECHECK_SECONDS), its team's requests keep changing: each push reads
    the caller again first, so none of them reaches it."""
    key_id, raw = new_key(llmops, "revoked-then-pushed")
    socket = subscribed_to_all(enter, llmops, raw)
    assert llmops.shell(revoke_command(key_id)) == "True"
    changed = time.monotonic()
    # At once, before the re-read comes round: three requests of the same team (another key).
    for i in range(3):
        status, body = llmops.api(
            "POST",
            "/api/v1/requests",
            {
                "workload": "product-search",
                "messages": [{"role": "user", "content": f"Find a tent, try {i}."}],
                "max_tokens": 20,
            },
        )
        assert status == 200, body
    pushed_until = time.monotonic()
    closed = socket.wait_closed(RECHECK_BOUND_S + 3)
    figures.record(
        "T8",
        "websocket: pushes after another process revoked the key",
        requests_changed_meanwhile_s=round(pushed_until - changed, 3),
        closed_after_s=round(socket.closed_at - changed, 3) if closed else None,
        messages_after=len(socket.after(changed)),
    )

    assert closed and socket.close_code == CLOSE_CREDENTIALS_ENDED
    assert socket.after(changed) == []
