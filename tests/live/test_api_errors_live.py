"""Errors on a real socket, as the official openai SDK and plain HTTP clients meet them:
JSON under /v1 and /api/v1, never Django's HTML pages, with the stack's DEBUG on (the dev
default, which the live stack keeps)."""

from __future__ import annotations

import json
import re
import urllib.request

import openai
import pytest


def call(llmops, method: str, path: str, *, data: bytes | None = None, headers=None):
    """(status, headers, body bytes) of a raw request with the stack's API key."""
    request = urllib.request.Request(
        f"{llmops.base_url}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {llmops.api_key}", **(headers or {})},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_an_sdk_call_llmops_does_not_serve_raises_not_found_with_our_message(llmops):
    with pytest.raises(openai.NotFoundError) as raised:
        llmops.openai().moderations.create(input="tents")

    error = raised.value
    assert error.status_code == 404
    assert error.body == {
        "message": "Invalid URL (POST /v1/moderations): this path is not served by llmops.",
        "type": "invalid_request_error",
        "param": None,
        "code": "unknown_url",
    }
    assert "not served by llmops" in str(error)
    assert re.fullmatch(r"req_[0-9a-f]{32}", error.request_id)


def test_the_sdk_getting_chat_completions_gets_an_openai_405(llmops):
    with pytest.raises(openai.APIStatusError) as raised:
        llmops.openai().get("/chat/completions", cast_to=object)

    error = raised.value
    assert error.status_code == 405
    assert error.response.headers["allow"] == "POST"
    assert (error.type, error.code) == ("invalid_request_error", "method_not_allowed")
    assert error.request_id.startswith("req_")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_an_unknown_v1_path_answers_openai_json_whatever_the_method(llmops, method):
    data = b"{}" if method == "POST" else None
    status, headers, body = call(
        llmops, method, "/v1/nope", data=data, headers={"Content-Type": "application/json"}
    )

    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "unknown_url"


def test_a_wrong_content_type_on_the_batch_api_answers_openai_json(llmops):
    status, headers, body = call(
        llmops, "POST", "/v1/batches", data=b"{}", headers={"Content-Type": "text/plain"}
    )

    assert status == 415
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert headers["x-request-id"].startswith("req_")


def test_a_multipart_upload_without_a_boundary_answers_openai_json(llmops):
    # daphne's HTTP server (twisted) parsed every form and multipart body itself before Django
    # did, for nothing, and answered one it could not parse with a bare 400, no body, the
    # connection dropped: an SDK could not say why.
    status, headers, body = call(
        llmops,
        "POST",
        "/v1/files",
        data=b"purpose=batch",
        headers={"Content-Type": "multipart/form-data"},
    )

    assert status == 400
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    assert "boundary" in error["message"].lower(), error


def test_an_unknown_native_api_path_answers_drf_json(llmops):
    status, headers, body = call(llmops, "GET", "/api/v1/nope", headers={"Accept": "text/html"})

    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "detail": "Invalid URL (GET /api/v1/nope): this path is not served by llmops."
    }


def test_html_pages_keep_debugs_html_404(llmops):
    status, headers, body = call(llmops, "GET", "/no-such-page/", headers={"Accept": "text/html"})

    assert status == 404
    assert headers["Content-Type"].startswith("text/html")
    assert b"Using the URLconf defined in" in body  # DEBUG's technical page: DEBUG is on


def test_the_favicon_is_served_and_linked_from_pages(llmops):
    status, headers, body = call(llmops, "GET", "/favicon.ico")
    _, _, home = call(llmops, "GET", "/")

    assert status == 200
    assert headers["Content-Type"] == "image/svg+xml"
    assert body.startswith(b"<svg")
    assert b'<link rel="icon" type="image/svg+xml" href="/favicon.ico">' in home
