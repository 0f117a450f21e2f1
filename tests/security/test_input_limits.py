"""Issue 19 items 5 and 6: what a hostile tenant sends is refused with a 4xx in its API's shape,
naming what is at fault, before anything is written: numbers JSON cannot carry (NaN, Infinity,
1e999), metadata past the shared size and depth, client-named headers past their length, and
bodies past the cap (413, JSON). An unexpected exception on an API path is a JSON 500 with
DEBUG on. Through Django's test client; tests/security/test_hostile_live.py repeats the key
cases with the official SDK over HTTP."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

import routing.services
from batches.models import ClientBatch
from routing.models import Request
from tests.security.serving_demo import WORKLOAD, chat, http_fixture, native

pytestmark = pytest.mark.django_db
__all__ = ["http_fixture"]  # the fixture this module uses

# (where, raw JSON text with the bad number in place): each must be refused naming `where`.
NOT_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "123456789012345678901234567890"]


def native_body(field: str, number: str) -> str:
    body = {"workload": WORKLOAD, "messages": [{"role": "user", "content": "hi"}]}
    return _with(body, field, number)


def chat_body(field: str, number: str) -> str:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return _with(body, field, number)


def _with(body: dict, field: str, number: str) -> str:
    """`body` with `number` at the dotted path `field`, as raw JSON text."""
    *parents, last = field.split(".")
    node = body
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = "@@"
    return json.dumps(body).replace('"@@"', number)


FIELDS = ["metadata.a", "temperature", "metadata.deep.er"]


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
@pytest.mark.parametrize("number", NOT_FINITE)
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("idempotency_key", [None, "retry-1"], ids=["no-key", "key"])
def test_numbers_json_cannot_carry_are_a_400_naming_the_field_on_both_serving_apis(
    http, settings, debug, number, field, idempotency_key, figures
):
    settings.DEBUG = debug
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    mine = native(http, native_body(field, number), **headers)
    openai = chat(http, chat_body(field, number), **headers)
    figures.record(
        "T8",
        f"{number[:12]} in {field}",
        native=mine.status_code,
        openai=openai.status_code,
        rows_written=Request.objects.count(),
    )

    assert mine.status_code == 400, mine.content[:300]
    assert mine["Content-Type"] == "application/json"
    assert mine.json()["field"] == field
    assert openai.status_code == 400, openai.content[:300]
    error = openai.json()["error"]
    assert (error["param"], error["type"]) == (field, "invalid_request_error")
    assert number[:10] in error["message"]
    assert not Request.objects.exists()


@pytest.mark.parametrize("number", ["NaN", "1e999"])
def test_numbers_json_cannot_carry_are_a_400_on_the_drf_apis_too(http, number):
    body = '{"input_file_id": "file-x", "endpoint": "/v1/chat/completions", '
    body += f'"completion_window": "24h", "metadata": {{"a": {number}}}}}'

    batch = http.post(
        "/v1/batches", body, content_type="application/json", HTTP_X_WORKLOAD=WORKLOAD
    )
    budget = http.post(
        "/api/v1/budgets", f'{{"limit_usd": {number}}}', content_type="application/json"
    )

    assert batch.status_code == 400
    assert batch.json()["error"]["param"] == "metadata.a"
    assert batch.json()["error"]["message"].count("metadata.a") == 1
    assert budget.status_code == 400, budget.content[:300]
    assert "limit_usd" in budget.json()
    assert not ClientBatch.objects.exists()


@pytest.mark.parametrize("number", ["NaN", "1e999", "-Infinity"])
def test_a_batch_file_line_with_a_number_json_cannot_carry_is_refused_naming_line_and_field(
    http, number
):
    good = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}
    good["body"] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    bad = json.loads(json.dumps(good))
    bad["custom_id"] = "b"
    bad["body"]["temperature"] = "@@"
    data = (json.dumps(good) + "\n" + json.dumps(bad).replace('"@@"', number) + "\n").encode()

    response = http.post(
        "/v1/files",
        {"purpose": "batch", "file": SimpleUploadedFile("in.jsonl", data)},
    )

    assert response.status_code == 400, response.content[:300]
    message = response.json()["error"]["message"]
    assert "line 2: body.temperature" in message


def test_metadata_past_the_shared_size_is_a_400_on_both_serving_apis(http, settings):
    big = {"k": "x" * settings.LLMOPS_MAX_METADATA_CHARS}

    mine = native(http, {"metadata": big})
    openai = chat(http, {"metadata": big})

    assert mine.status_code == 400 and mine.json()["field"] == "metadata"
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "metadata"
    assert not Request.objects.exists()


def test_metadata_nested_past_the_shared_depth_is_a_400_on_both_serving_apis(http, settings):
    deep: dict = {"leaf": 1}
    for _ in range(settings.LLMOPS_MAX_METADATA_DEPTH):
        deep = {"d": deep}

    mine = native(http, {"metadata": deep})
    openai = chat(http, {"metadata": deep})

    assert mine.status_code == 400 and "deeper" in mine.json()["detail"]
    assert openai.status_code == 400 and "deeper" in openai.json()["error"]["message"]
    assert not Request.objects.exists()


def test_metadata_is_stored_once_in_its_own_column(http):
    metadata = {"order": "A-17"}

    mine = native(http, {"metadata": metadata})
    openai = chat(http, {"metadata": metadata})

    assert mine.status_code == 200 and openai.status_code == 200, openai.content[:300]
    for request in Request.objects.all():
        assert request.metadata == metadata
        assert "metadata" not in request.params
        assert metadata["order"] not in json.dumps(request.params)


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Request-Id", "X-Workload"])
def test_a_client_named_header_past_its_length_is_a_400_naming_it(http, settings, header):
    meta = "HTTP_" + header.upper().replace("-", "_")
    long = {meta: "k" * 5_000}

    mine = native(http, {}, **long)
    openai = chat(http, {}, **long)
    batches = http.get("/v1/batches", **long)

    assert mine.status_code == 400 and mine.json()["field"] == header
    assert openai.status_code == 400 and openai.json()["error"]["param"] == header
    assert batches.status_code == 400 and batches.json()["error"]["param"] == header
    assert not Request.objects.exists()


def test_an_idempotency_key_in_the_native_body_has_the_same_limit(http, settings):
    response = native(http, {"idempotency_key": "k" * (settings.LLMOPS_MAX_KEY_HEADER_CHARS + 1)})

    assert response.status_code == 400
    assert response.json()["field"] == "idempotency_key"
    assert not Request.objects.exists()


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/api/v1/requests", "native"),
        ("/v1/chat/completions", "openai"),
        ("/v1/batches", "openai"),
        ("/api/v1/budgets", "native"),
        ("/api/v1/workloads", "native"),
    ],
)
@pytest.mark.parametrize("debug", [True, False], ids=["debug", "no-debug"])
def test_a_body_over_the_cap_is_a_413_json_in_the_callers_shape(http, settings, debug, path, shape):
    settings.DEBUG = debug
    body = b'{"pad": "' + b"x" * settings.LLMOPS_MAX_BODY_BYTES + b'"}'

    response = http.post(path, body, content_type="application/json", HTTP_X_WORKLOAD=WORKLOAD)

    assert response.status_code == 413, response.content[:200]
    assert response["Content-Type"] == "application/json"
    if shape == "openai":
        assert response.json()["error"]["code"] == "too_large"
    else:
        assert response.json()["code"] == "too_large"
    assert not Request.objects.exists()


def test_a_batch_file_upload_keeps_its_own_larger_cap(http, settings):
    settings.LLMOPS_MAX_BODY_BYTES = 4096

    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions"}
    lines = []
    for i in range(300):
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
        lines.append(json.dumps({**line, "custom_id": f"c{i}", "body": body}))
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > 4 * settings.LLMOPS_MAX_BODY_BYTES

    response = http.post(
        "/v1/files", {"purpose": "batch", "file": SimpleUploadedFile("a.jsonl", data)}
    )

    assert response.status_code == 200, response.content[:300]
    assert response.json()["bytes"] == len(data)


SECRET = "sk-internal-detail-that-must-not-leak"


@pytest.mark.parametrize("shape", ["native", "openai"])
def test_an_exception_on_a_serving_path_with_debug_is_a_json_500_without_the_traceback(
    http, settings, monkeypatch, shape, caplog
):
    settings.DEBUG = True

    def broken(**kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(routing.services, "request_admit", broken)

    response = native(http, {}) if shape == "native" else chat(http, {})

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert SECRET not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert SECRET in caplog.text  # logged server-side, with its traceback
