"""Issue 19 through the real boundary: the official openai SDK and plain HTTP against llmops on
a real socket (daphne, DEBUG on as in development): NaN refused naming the field (plain HTTP:
the SDK will not encode NaN), a body over
the cap a 413 the SDK raises, a 402 under an Idempotency-Key the same 402 on every retry (never
a 502), a foreign Host a JSON 400 on both serving endpoints."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from tests.live import conftest as live

# The live stack (daphne on a real socket, seeded with the demo), one per module.
llmops = live.llmops
WORKLOAD = "product-search"


def raw_post(llmops, path: str, body: bytes, headers: dict) -> tuple[int, str, dict]:
    request = urllib.request.Request(
        f"{llmops.base_url}{path}",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {llmops.api_key}",
            "Content-Type": "application/json",
            **headers,
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/requests"])
def test_nan_in_metadata_on_a_real_socket_is_a_400_naming_the_field(llmops, path, figures):
    # Plain HTTP: the official SDK itself refuses to encode NaN; a hostile client does not.
    body = b'{"workload": "product-search", "model": "gpt-4o-mini", "metadata": {"score": NaN},'
    body += b' "messages": [{"role": "user", "content": "hi"}]}'

    status, content_type, answer = raw_post(
        llmops, path, body, {"X-Workload": WORKLOAD, "Idempotency-Key": f"nan-{path}"}
    )
    figures.record("T8", f"NaN in metadata on {path} (live)", status=status)

    assert (status, content_type) == (400, "application/json")
    field = answer["error"]["param"] if path.startswith("/v1") else answer["field"]
    assert field == "metadata.score"
    written = llmops.shell(
        "from routing.models import Request; "
        f"print(Request.objects.filter(idempotency_key='nan-{path}').count())"
    )
    assert written == "0"


def test_the_sdk_sending_a_body_over_the_cap_gets_a_413_in_openais_shape(llmops, figures):
    client = llmops.openai(WORKLOAD)

    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 1_100_000}]
        )
    figures.record("T8", "SDK: body over the cap (live)", status=raised.value.status_code)

    assert raised.value.status_code == 413
    assert raised.value.code == "too_large"


def test_a_402_under_an_idempotency_key_is_a_402_on_every_sdk_retry(llmops, figures):
    llmops.shell(
        "from decimal import Decimal; from billing.models import Budget; "
        "from billing.services import budget_update; "
        "budget_update(budget=Budget.objects.get(team__slug='acme', workload=None), "
        "limit_usd=Decimal('0.000001')); print('ok')"
    )
    client = llmops.openai(WORKLOAD)
    statuses, bodies = [], []
    try:
        for _ in range(3):
            with pytest.raises(openai.APIStatusError) as raised:
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "a refused question"}],
                    extra_headers={"Idempotency-Key": "refused-1"},
                )
            statuses.append(raised.value.status_code)
            bodies.append(raised.value.body)
    finally:
        llmops.shell(
            "from decimal import Decimal; from billing.models import Budget; "
            "from billing.services import budget_update; "
            "budget_update(budget=Budget.objects.get(team__slug='acme', workload=None), "
            "limit_usd=Decimal('500')); print('ok')"
        )
    figures.record("T8", "SDK: 402 then two retries with its key (live)", statuses=statuses)

    assert statuses == [402, 402, 402]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["code"] == "budget_exceeded"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/requests"])
def test_a_foreign_host_on_a_serving_endpoint_is_a_json_400_on_a_real_socket(llmops, path):
    body = {"workload": WORKLOAD, "model": "gpt-4o-mini"}
    body["messages"] = [{"role": "user", "content": "hi"}]

    status, content_type, answer = raw_post(
        llmops, path, json.dumps(body).encode(), {"Host": "evil.example"}
    )

    assert (status, content_type) == (400, "application/json")
    assert "Host" in json.dumps(answer)
