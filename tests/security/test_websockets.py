"""Websockets in-process (channels' WebsocketCommunicator against llmops.asgi.application):
a foreign Origin is refused whatever the credentials, a handshake without a key or a browser
session is refused, and a key of team A hears nothing of team B's requests."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from batches.services import request_cancel
from llmops.asgi import application
from routing.keys import api_key_create
from routing.models import LatencyClass, Request, RoutingPolicy, Workload

# Committed rows: the consumers read them from their own database connections.
pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["/ws/stream/", "/ws/requests/"]
GOOD_ORIGIN = "http://localhost:8000"
# Browsers and websocket clients always send Host; the handshake's origin is compared with it.
HOST = (b"host", b"localhost:8000")


def handshake(path: str, headers: list[tuple[bytes, bytes]]) -> bool:
    async def connect() -> bool:
        communicator = WebsocketCommunicator(application, path, headers=[HOST, *headers])
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    return async_to_sync(connect)()


@pytest.fixture
def session_cookie(team) -> bytes:
    user = User.objects.create_user("alice", "alice@acme.example", "pw-for-tests-only")
    team.members.add(user)
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def bearer(api_key) -> bytes:
    return f"Bearer {api_key[1]}".encode()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "https://localhost.evil.example",
        "http://evil.example:8000",
        "null",  # a sandboxed iframe or a file:// page
        # Same host, another port or scheme: another origin, as the CSRF check has it.
        "http://localhost:8001",
        "http://localhost",
        "https://localhost:8000",
    ],
)
def test_a_foreign_origin_is_refused_even_with_a_session_or_a_key(
    path, origin, session_cookie, bearer, figures
):
    own = handshake(path, [(b"origin", GOOD_ORIGIN.encode()), (b"cookie", session_cookie)])
    with_session = handshake(path, [(b"origin", origin.encode()), (b"cookie", session_cookie)])
    with_key = handshake(path, [(b"origin", origin.encode()), (b"authorization", bearer)])
    figures.record(
        "T8",
        f"websocket {path}, Origin {origin}",
        own_origin_with_session="accepted" if own else "refused",
        with_a_session="accepted" if with_session else "refused",
        with_a_key="accepted" if with_key else "refused",
    )

    assert own
    assert not with_session
    assert not with_key


@pytest.mark.parametrize("path", PATHS)
def test_a_handshake_without_a_key_or_a_browser_session_is_refused(
    path, session_cookie, bearer, api_key, figures
):
    with_key = handshake(path, [(b"authorization", bearer)])  # a program with its key
    attempts = {
        "nothing": (path, []),
        "an allowed Origin alone": (path, [(b"origin", GOOD_ORIGIN.encode())]),
        # A cookie without an Origin is not a browser: programs must use a key.
        "a session cookie without Origin": (path, [(b"cookie", session_cookie)]),
        # Keys never ride in the query string (it ends up in access logs).
        "the key in the query string": (f"{path}?key={api_key[1]}", []),
        "an unknown key": (path, [(b"authorization", b"Bearer llm_not-a-real-key-0000000000")]),
        "a malformed Authorization": (path, [(b"authorization", bearer + b" extra")]),
    }
    accepted = [name for name, (url, headers) in attempts.items() if handshake(url, headers)]
    figures.record(
        "T8",
        f"websocket {path}, no or bad credentials",
        with_the_key="accepted" if with_key else "refused",
        attempts_without_valid_credentials=len(attempts),
        refused=len(attempts) - len(accepted),
    )

    assert with_key
    assert accepted == []


def queued_request(team, slug: str) -> Request:
    workload = Workload.objects.create(
        team=team,
        slug=slug,
        latency_class=LatencyClass.REALTIME,
        policy=RoutingPolicy.objects.create(team=team, name=f"{slug}-policy"),
    )
    return Request.objects.create(team=team, workload=workload, status=Request.Status.QUEUED)


def test_a_key_of_team_a_hears_nothing_of_team_bs_requests(team, other_team, api_key):
    theirs = queued_request(other_team, "zq-their-workload")
    _, b_raw = api_key_create(team=other_team, name="b")

    async def scenario() -> tuple[list[dict], list[dict]]:
        a = WebsocketCommunicator(
            application,
            "/ws/requests/",
            headers=[HOST, (b"authorization", f"Bearer {api_key[1]}".encode())],
        )
        b = WebsocketCommunicator(
            application,
            "/ws/requests/",
            headers=[HOST, (b"authorization", f"Bearer {b_raw}".encode())],
        )
        assert (await a.connect())[0] and (await b.connect())[0]
        await a.send_json_to({"type": "subscribe", "request_ids": [str(theirs.pk)]})
        a_heard = [await a.receive_json_from(timeout=5), await a.receive_json_from(timeout=5)]
        await a.send_json_to({"type": "subscribe", "all": True})
        a_heard.append(await a.receive_json_from(timeout=5))
        await b.send_json_to({"type": "subscribe", "all": True})
        b_heard = [await b.receive_json_from(timeout=5)]

        assert await database_sync_to_async(request_cancel)(request=theirs)

        b_heard.append(await b.receive_json_from(timeout=5))
        assert await a.receive_nothing(timeout=0.5)
        await a.disconnect()
        await b.disconnect()
        return a_heard, b_heard

    a_heard, b_heard = async_to_sync(scenario)()

    assert a_heard[0] == {"type": "subscribed", "request_ids": [], "all": False}
    assert a_heard[1]["type"] == "error" and a_heard[1]["code"] == "not_found"
    assert a_heard[2] == {"type": "subscribed", "request_ids": [], "all": True}
    assert "zq-their-workload" not in repr(a_heard)
    # B's own subscriber did hear the change A was not told of.
    assert b_heard[1]["type"] == "status" and b_heard[1]["request_id"] == str(theirs.pk)
    assert b_heard[1]["request"]["workload"] == "zq-their-workload"
    assert b_heard[1]["status"] == "cancelled"


def test_a_start_from_a_key_revoked_elsewhere_admits_nothing_and_closes_the_socket(team, api_key):
    """Revoked without a signal in this process (as another process's write is), before the
    periodic re-read: the start's own re-read of the caller, in its admission's database hop,
    refuses it."""
    from django.utils import timezone

    from routing.models import ApiKey

    key, raw = api_key

    async def scenario() -> tuple[dict, dict]:
        socket = WebsocketCommunicator(
            application, "/ws/stream/", headers=[HOST, (b"authorization", f"Bearer {raw}".encode())]
        )
        assert (await socket.connect())[0]
        await socket.send_json_to({"type": "start"})  # the key still good: a validation error
        invalid = await socket.receive_json_from(timeout=5)
        await database_sync_to_async(ApiKey.objects.filter(pk=key.pk).update)(
            revoked_at=timezone.now()
        )
        await socket.send_json_to(
            {
                "type": "start",
                "workload": "anything",
                "messages": [{"role": "user", "content": "hi"}],
            }
        )
        closed = await socket.receive_output(timeout=5)
        await socket.disconnect()
        return invalid, closed

    invalid, closed = async_to_sync(scenario)()

    assert invalid["type"] == "error" and invalid.get("field")
    assert closed == {"type": "websocket.close", "code": 4401}
    assert not Request.objects.filter(team=team).exists()
