"""API clients get JSON errors, never an HTML page: OpenAI's shape under /v1, DRF's
under /api/v1, with DEBUG on (the dev default) and off; HTML pages keep their HTML errors."""

from __future__ import annotations

import logging
import re

import pytest
from django.test import Client

import routing.selectors
import routing.serving
from batches import apis as batches_apis

pytestmark = pytest.mark.django_db

SECRET = "sk-internal-detail-that-must-not-leak"


@pytest.fixture(params=[True, False], ids=["debug", "no-debug"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.fixture
def client_with_key(api_key) -> Client:
    # The server's answer to an exception, not the exception re-raised into the test.
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_key[1]}", raise_request_exception=False)


def openai_error_of(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert re.fullmatch(r"req_[0-9a-f]{32}", response["x-request-id"])
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def drf_error_of(response, status: int) -> str:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response["x-request-id"].startswith("req_")
    body = response.json()
    assert set(body) == {"detail"}
    return body["detail"]


@pytest.mark.parametrize(
    "path", ["/v1/moderations", "/v1/nope", "/v1", "/v1.json", "/v1/chat/completions/"]
)
def test_an_unknown_v1_path_is_an_openai_404_saying_llmops_does_not_serve_it(
    debug, client_with_key, path
):
    error = openai_error_of(client_with_key.get(path), 404)

    assert error == {
        "message": f"Invalid URL (GET {path}): this path is not served by llmops.",
        "type": "invalid_request_error",
        "param": None,
        "code": "unknown_url",
    }


def test_a_post_to_an_unknown_v1_path_is_a_404_not_a_csrf_refusal(debug, api_key):
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {api_key[1]}")

    error = openai_error_of(
        client.post("/v1/moderations", {}, content_type="application/json"), 404
    )

    assert error["code"] == "unknown_url"
    assert "POST /v1/moderations" in error["message"]


def test_get_chat_completions_is_an_openai_405_with_allow(debug, client_with_key):
    response = client_with_key.get("/v1/chat/completions")

    error = openai_error_of(response, 405)
    assert response["Allow"] == "POST"
    assert (error["type"], error["code"]) == ("invalid_request_error", "method_not_allowed")


def test_a_wrong_method_on_the_batch_api_is_an_openai_405_with_allow(debug, client_with_key):
    response = client_with_key.delete("/v1/batches/batch_x/cancel")

    error = openai_error_of(response, 405)
    assert response["Allow"] == "POST, OPTIONS"
    assert error["type"] == "invalid_request_error"
    assert "DELETE" in error["message"]


def test_a_wrong_content_type_on_the_batch_api_is_an_openai_415(debug, client_with_key):
    response = client_with_key.post("/v1/batches", "{}", content_type="text/plain")

    error = openai_error_of(response, 415)
    assert error["type"] == "invalid_request_error"
    assert "text/plain" in error["message"]


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1", "/api/v1/me/"])
def test_an_unknown_native_api_path_is_a_drf_404(debug, client_with_key, path):
    detail = drf_error_of(client_with_key.get(path), 404)

    assert detail == f"Invalid URL (GET {path}): this path is not served by llmops."


def test_a_wrong_method_on_the_native_api_is_a_drf_405(debug, client_with_key):
    response = client_with_key.put("/api/v1/me", {}, content_type="application/json")

    assert drf_error_of(response, 405) == 'Method "PUT" not allowed.'
    assert response["Allow"] == "GET, HEAD, OPTIONS"


def test_an_exception_in_chat_completions_is_a_generic_openai_500(
    debug, client_with_key, monkeypatch, caplog
):
    def fault(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(routing.serving, "prepare", fault)

    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client_with_key.post(
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            content_type="application/json",
        )

    assert openai_error_of(response, 500) == {
        "message": "The server had an error while processing your request.",
        "type": "api_error",
        "param": None,
        "code": "server_error",
    }
    assert SECRET not in response.content.decode()
    # The operator still gets the traceback, in the log.
    [record] = [r for r in caplog.records if r.getMessage().startswith("Internal Server Error")]
    assert record.getMessage() == "Internal Server Error: /v1/chat/completions"
    assert record.exc_info[1].args == (SECRET,)


def test_an_exception_in_a_batch_api_view_is_an_openai_500(debug, client_with_key, monkeypatch):
    def fault(self, request):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(batches_apis.BatchCollectionApi, "get", fault)

    error = openai_error_of(client_with_key.get("/v1/batches"), 500)

    assert (error["type"], error["code"]) == ("api_error", "server_error")
    assert SECRET not in error["message"]


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/workloads"])
def test_an_exception_in_a_native_api_view_is_a_drf_500(debug, client_with_key, monkeypatch, path):
    def fault(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(routing.selectors, "teams_for", fault)
    monkeypatch.setattr(routing.selectors, "workload_list", fault)

    detail = drf_error_of(client_with_key.get(path), 500)

    assert detail == "The server had an error while processing your request."


def test_an_exception_in_the_native_request_endpoint_is_a_drf_500(
    debug, client_with_key, monkeypatch
):
    def fault(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(routing.serving, "prepare", fault)

    response = client_with_key.post(
        "/api/v1/requests", {"workload": "x", "messages": []}, content_type="application/json"
    )

    assert drf_error_of(response, 500) == "The server had an error while processing your request."


def test_a_bad_host_on_the_api_is_a_json_400_without_debug(settings, client_with_key):
    settings.DEBUG = False

    response = client_with_key.get("/v1/nope", HTTP_HOST="evil.example")

    error = openai_error_of(response, 400)
    # llmops.middleware answers before Django's handler400 would, naming the header.
    assert (error["code"], error["param"]) == ("bad_host", "Host")
    assert "Host header" in error["message"]


@pytest.mark.parametrize("path", ["/no-such-page/", "/v10/models", "/api/v10", "/apiv1/"])
def test_html_pages_keep_their_html_404(debug, client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_html_pages_keep_their_html_500_without_debug(settings, monkeypatch):
    settings.DEBUG = False

    def fault(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr("llmops.views.render", fault)

    response = Client(raise_request_exception=False).get("/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert SECRET not in response.content.decode()


def test_the_favicon_is_served_and_every_page_links_it(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")
    assert "max-age=86400" in response["Cache-Control"]
    page = client.get("/accounts/login/").content.decode()
    assert '<link rel="icon" type="image/svg+xml" href="/favicon.ico">' in page
