"""Issue 19 item 10: the serving fast path (llmops/serving.py, which skips Django's middleware)
checks the Host header against ALLOWED_HOSTS as the rest of the site does, and refuses a
foreign one with a 400 in the caller's JSON shape, DEBUG or not. Through llmops.asgi's
application in-process; tests/security/test_hostile_live.py does it over a real socket."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator

from llmops.asgi import application
from routing.models import Request

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(path: str, host: str) -> tuple[int, dict, dict]:
    async def send():
        communicator = HttpCommunicator(
            application,
            "POST",
            path,
            body=json.dumps({"workload": "w", **BODY}).encode(),
            headers=[(b"host", host.encode()), (b"content-type", b"application/json")],
        )
        return await communicator.get_response()

    response = async_to_sync(send)()
    headers = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    return response["status"], headers, json.loads(response["body"] or b"null")


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/requests"])
@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example:8000", "127.0.0.2"])
def test_a_foreign_host_on_a_serving_endpoint_is_a_json_400(settings, debug, path, host, figures):
    settings.DEBUG = debug

    status, headers, body = post(path, host)
    figures.record("T8", f"POST {path} with Host {host}", status=status)

    assert status == 400
    assert headers["content-type"] == "application/json"
    if path.startswith("/v1"):
        assert (body["error"]["code"], body["error"]["param"]) == ("bad_host", "Host")
    else:
        assert (body["code"], body["field"]) == ("bad_host", "Host")
    assert headers["x-request-id"].startswith("req_")
    assert not Request.objects.exists()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/requests"])
def test_an_allowed_host_goes_on_to_authentication(path):
    status, _, body = post(path, "localhost")

    assert status == 401, body


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
@pytest.mark.parametrize("path", ["/v1/batches", "/api/v1/requests?limit=1", "/v1/nowhere"])
def test_a_foreign_host_on_any_api_path_is_a_json_400(client, settings, debug, path, figures):
    """Outside the fast path Django's middleware would answer an HTML page (with DEBUG, its
    technical page naming settings and paths)."""
    settings.DEBUG = debug

    response = client.get(path, HTTP_HOST="evil.example")
    figures.record("T8", f"GET {path} with Host evil.example", status=response.status_code)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    error = body["error"] if path.startswith("/v1") else body
    assert error["code"] == "bad_host"
    assert "Traceback" not in response.content.decode()


def test_a_foreign_host_on_a_page_still_gets_djangos_400(client):
    response = client.get("/billing/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert not response["Content-Type"].startswith("application/json")
