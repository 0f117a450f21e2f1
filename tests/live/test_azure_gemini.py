"""Issue 24's live checks: Azure OpenAI and Gemini behind llmops, through the official openai
SDK over HTTP, against the simulator speaking both (Azure's v1 paths and `api-key`; Gemini's
OpenAI-compatible chat and its native batch mode):

- an Azure deployment and a Gemini model answer plain, streamed and with tools, billed at the
  provider's price;
- `/v1/batches` jobs run on Azure's Global Batch and on Gemini's batch mode to completion at
  the batch price (the provider's own bill agrees);
- a cancelled Gemini job returns what it finished, billed once;
- an Azure batch refused for its enqueued-token quota is submitted again after a backoff and
  completes;
- deferred tickets run on either.
"""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from decimal import Decimal

import pytest

from tests.live.conftest import Llmops
from tests.live.test_openai_batches import jsonl, provider_batch_requests, work, work_until

REALTIME = "exec-briefings"  # globex: gemini-2.5-flash → gpt-4.1-mini (Azure) → claude-haiku-4-5
AZURE_BATCH = "listing-translations"  # acme: gpt-4.1-mini on Azure, batch allowed
GEMINI_BATCH = "log-summaries"  # acme: gemini-2.5-flash-lite, batch allowed
AZURE_DEPLOYMENT = "llmops-gpt-41-mini"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(autouse=True)
def _fresh_simulator(simulator_server):
    simulator_server.reset()


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


_GLOBEX_KEYS: dict[str, str] = {}  # per stack: one key made for the session's tests


def globex(llmops: Llmops) -> Llmops:
    """The stack as globex sees it (the demo key is acme's; exec-briefings is globex's): its
    SDK clients and its request lookups carry a key of globex's."""
    if llmops.base_url not in _GLOBEX_KEYS:
        _GLOBEX_KEYS[llmops.base_url] = llmops.shell(
            "from routing.keys import api_key_reset; from routing.models import Team, ApiKey; "
            "import secrets; secret = 'llm_globex_' + secrets.token_hex(16); "
            "api_key_reset(team=Team.objects.get(slug='globex'), name='live-globex', "
            "role=ApiKey.Role.ADMIN, secret=secret); print(secret)"
        )
    return dataclasses.replace(llmops, api_key=_GLOBEX_KEYS[llmops.base_url])


def billed_like(request: dict, provider: str, model: str) -> None:
    assert request["provider"] == provider and request["model"] == model, request
    assert request["status"] == "completed"
    assert Decimal(str(request["cost_usd"])) > 0


@pytest.mark.parametrize(
    ("name", "provider", "model"),
    [
        (AZURE_DEPLOYMENT, "sim-azure", "gpt-4.1-mini"),  # a client naming its deployment
        ("gpt-4.1-mini", "sim-azure", "gpt-4.1-mini"),
        ("gemini-2.5-flash", "sim-gemini", "gemini-2.5-flash"),
    ],
)
def test_plain_streamed_and_tool_calls_reach_azure_and_gemini(
    llmops, simulator_server, name, provider, model
):
    llmops = globex(llmops)
    client = llmops.openai(REALTIME)
    kind = "azure" if provider == "sim-azure" else "gemini"

    answer = client.chat.completions.create(
        model=name, max_tokens=40, messages=[{"role": "user", "content": unique("Brief me")}]
    )
    assert answer.choices[0].message.content
    billed_like(llmops.request_of(answer), provider, model)

    stream = client.chat.completions.create(
        model=name,
        max_tokens=40,
        stream=True,
        messages=[{"role": "user", "content": unique("Stream me a brief")}],
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    billed_like(llmops.request_of(stream.response.headers["x-request-id"]), provider, model)

    called = client.chat.completions.create(
        model=name,
        max_tokens=60,
        tools=[WEATHER],
        tool_choice="required",
        messages=[{"role": "user", "content": unique("Weather in Oslo? Use get_weather.")}],
    )
    [call] = called.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)
    assert called.choices[0].finish_reason == "tool_calls"
    billed_like(llmops.request_of(called), provider, model)

    # The provider's own bill: three realtime calls (one streamed) for that model.
    book = simulator_server.usage()[kind][model]
    assert sum(mode.get("requests", 0) for mode in book.values()) == 3


def test_gemini_answers_the_responses_api_through_its_chat(llmops):
    llmops = globex(llmops)
    response = llmops.openai(REALTIME).responses.create(
        # Room for the simulator's longest answer (256 tokens): it ends by itself.
        model="gemini-2.5-flash",
        input=unique("One line on KPIs"),
        max_output_tokens=300,
    )
    assert response.output_text and response.status == "completed"
    billed_like(llmops.request_of(response), "sim-gemini", "gemini-2.5-flash")


def test_a_parameter_gemini_cannot_honour_is_a_400_naming_it(llmops):
    """On a chain of Gemini models only (log-summaries) nothing can honour logit_bias: a 400
    naming it, not an answer that ignored it. (On exec-briefings, Azure would serve it.)"""
    import openai

    with pytest.raises(openai.BadRequestError) as refused:
        llmops.openai(GEMINI_BATCH).chat.completions.create(
            model="gemini-2.5-flash-lite",
            max_tokens=20,
            logit_bias={"50256": -100},
            messages=[{"role": "user", "content": "hi"}],
        )
    assert refused.value.body["param"] == "logit_bias"
    assert "gemini-2.5-flash-lite" in refused.value.body["message"]


def batch_line(custom_id: str, text: str, model: str) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 20},
    }


def run_client_batch(client, lines: list[dict]):
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def completed(llmops: Llmops, client, batch, timeout: float = 90):
    work_until(llmops, lambda: client.batches.retrieve(batch.id).status == "completed", timeout)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    return batch


def job_of(llmops: Llmops, request_id: str) -> dict:
    return json.loads(
        llmops.shell(
            "import json; from batches.models import BatchJob; "
            f"j = BatchJob.objects.get(items__request_id='{request_id}'); "
            "print(json.dumps({'provider': j.provider.slug, 'batch': j.provider_batch_id, "
            "'input': j.input_file_id, 'refusals': j.quota_refusals, 'status': j.status, "
            "'error': j.last_error}))"
        )
    )


@pytest.mark.parametrize(
    ("workload", "model", "provider", "kind"),
    [
        (AZURE_BATCH, "gpt-4.1-mini", "sim-azure", "azure"),
        (GEMINI_BATCH, "gemini-2.5-flash-lite", "sim-gemini", "gemini"),
    ],
)
def test_a_v1_batches_file_runs_on_azure_and_on_gemini_at_the_batch_price(
    llmops, simulator_server, workload, model, provider, kind
):
    client = llmops.openai(workload)
    batch = run_client_batch(
        client, [batch_line(f"r-{i}", unique(f"summarise {i}"), model) for i in range(5)]
    )
    batch = completed(llmops, client, batch)

    lines = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in lines) == [f"r-{i}" for i in range(5)]
    for result in lines:
        body = result["response"]["body"]
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        request = llmops.request_of(body["id"])
        assert request["mode"] == "batch" and request["provider"] == provider
        # The batch price is half the standard one on both (genai-prices); the counterfactual
        # is the same usage at the standard price of the workload's primary: this model.
        cost = Decimal(request["cost_usd"])
        assert cost > 0 and Decimal(request["counterfactual_cost_usd"]) == 2 * cost
    assert (
        job_of(llmops, llmops.request_of(lines[0]["response"]["body"]["id"])["id"])["provider"]
        == provider
    )
    assert simulator_server.usage()[kind][model]["batch"]["requests"] == 5
    assert provider_batch_requests(simulator_server, model) == 5


@pytest.mark.parametrize(("workload", "provider"), [(AZURE_BATCH, "sim-azure")])
def test_deferred_tickets_run_on_azure(llmops, workload, provider):
    ids = llmops.defer(workload, 3, text=unique("translate listing {i}"))
    llmops.shell(
        "from django.core.management import call_command; import io; "
        "call_command('advance_batches', '--flush', '--until-idle', '30', stdout=io.StringIO()); "
        "print(1)"
    )
    work_until(llmops, lambda: all(_status(llmops, i) == "completed" for i in ids))
    for request_id in ids:
        status, request = llmops.api("GET", f"/api/v1/requests/{request_id}")
        assert status == 200 and request["status"] == "completed" and request["mode"] == "batch"
        assert request["provider"] == provider
    assert job_of(llmops, ids[0])["input"]  # Azure's file, uploaded with an expiry


def _status(llmops: Llmops, request_id: str) -> str:
    return llmops.api("GET", f"/api/v1/requests/{request_id}")[1]["status"]


def test_a_cancelled_gemini_job_returns_what_it_finished_billed_once(llmops, simulator_server):
    simulator_server.config(batch_turnaround_s=100, batch_cancel_s=5)
    client = llmops.openai(GEMINI_BATCH)
    model = "gemini-2.5-flash-lite"
    batch = run_client_batch(
        client, [batch_line(f"g-{i}", unique(f"log {i}"), model) for i in range(20)]
    )
    work(llmops)  # admitted and submitted
    assert client.batches.retrieve(batch.id).status == "in_progress"
    simulator_server.advance(40)  # Gemini answers some of it

    assert client.batches.cancel(batch.id).status == "cancelling"
    work(llmops)  # the cancel goes out
    simulator_server.advance(10)
    work_until(llmops, lambda: client.batches.retrieve(batch.id).status != "cancelling")

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled"
    output = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    billed = simulator_server.usage()["gemini"][model]["batch"]["requests"]
    assert 0 < billed < 20 and len(output) == billed  # partial results, each answered once
    assert len(errors) == 20 - billed
    assert {x["error"]["code"] for x in errors} == {"batch_cancelled"}
    charges = 0
    for result in output:
        request = llmops.request_of(result["response"]["body"]["id"])
        charges += 1
        assert request["mode"] == "batch" and request["provider"] == "sim-gemini"
    assert charges == billed
    assert (
        llmops.shell("from billing.selectors import unheld_charges; print(unheld_charges())")
        == "[]"
    )


def test_an_azure_quota_refusal_is_submitted_again_after_a_backoff(llmops, simulator_server):
    # Azure refuses a batch whose tokens would overflow the deployment's enqueued-token quota:
    # the batch fails at validation with token_limit_exceeded. Twice here.
    simulator_server.fault(
        provider="azure", endpoint="batches", code="token_limit_exceeded", count=2
    )
    client = llmops.openai(AZURE_BATCH)
    batch = run_client_batch(
        client, [batch_line(f"q-{i}", unique(f"translate {i}"), "gpt-4.1-mini") for i in range(3)]
    )
    refusals = []

    def done() -> bool:
        # Time, not a fault: the backoff's wait (30 s, then 60 s) is moved to now.
        llmops.shell(
            "from django.utils import timezone; from batches.models import BatchJob; "
            "BatchJob.objects.filter(quota_refusals__gt=0, status='submitting')"
            ".update(next_check_at=timezone.now()); print(1)"
        )
        refusals.append(
            llmops.shell(
                "from batches.models import BatchJob; "
                "print(max(BatchJob.objects.values_list('quota_refusals', flat=True)))"
            )
        )
        return client.batches.retrieve(batch.id).status == "completed"

    work_until(llmops, done, timeout=120)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 3
    assert "2" in refusals  # refused twice, then accepted
    lines = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    job = job_of(llmops, llmops.request_of(lines[0]["response"]["body"]["id"])["id"])
    assert job["refusals"] == 2 and job["status"] == "completed"
    # One accepted provider batch answered and billed: the refused ones billed nothing.
    assert simulator_server.usage()["azure"]["gpt-4.1-mini"]["batch"]["requests"] == 3


CLOUD_EMBEDDINGS = """
from django.core.management import call_command
from routing.models import LlmModel, PolicyModel, Provider, RoutingPolicy, Team, Workload
acme = Team.objects.get(slug="acme")
azure = LlmModel.objects.get_or_create(
    provider=Provider.objects.get(slug="sim-azure"), model_id="text-embedding-3-small",
    defaults=dict(kind="embedding", tier="economy", context_window=8192, max_output_tokens=0,
                  deployment="llmops-embed-small"))[0]
gemini = LlmModel.objects.get_or_create(
    provider=Provider.objects.get(slug="sim-gemini"), model_id="gemini-embedding-001",
    defaults=dict(kind="embedding", tier="economy", context_window=2048, max_output_tokens=0))[0]
policy, made = RoutingPolicy.objects.get_or_create(team=acme, name="cloud-embeddings",
                                                   defaults=dict(tier="economy"))
if made:
    PolicyModel.objects.create(policy=policy, model=azure, position=0)
    PolicyModel.objects.create(policy=policy, model=gemini, position=1)
Workload.objects.get_or_create(team=acme, slug="cloud-embeddings",
                               defaults=dict(latency_class="realtime", policy=policy))
call_command("sync_prices", verbosity=0)
print("ok")
"""


def test_embeddings_on_an_azure_deployment_and_on_gemini(llmops, simulator_server):
    """Embedding models on either cloud, as an operator adds them in the admin: an Azure
    deployment of text-embedding-3-small and Gemini's gemini-embedding-001, each priced."""
    assert llmops.shell(CLOUD_EMBEDDINGS) == "ok"
    client = llmops.openai("cloud-embeddings")

    for name, provider, model, size in (
        ("llmops-embed-small", "sim-azure", "text-embedding-3-small", 1536),
        ("gemini-embedding-001", "sim-gemini", "gemini-embedding-001", 3072),
    ):
        answer = client.embeddings.with_raw_response.create(
            model=name, input=[unique("tents"), unique("stoves")]
        )
        vectors = answer.parse().data
        assert [len(v.embedding) for v in vectors] == [size, size]
        request = llmops.request_of(answer.headers["x-request-id"])
        billed_like(request, provider, model)
    kinds = simulator_server.usage()
    assert kinds["azure"]["text-embedding-3-small"]["realtime"]["requests"] == 1
    assert kinds["gemini"]["gemini-embedding-001"]["realtime"]["requests"] == 1


def test_the_anthropic_sdk_reaches_gemini_and_azure_translated(llmops, simulator_server):
    """A Claude client (Claude Code's protocol) on the three-cloud workload, naming a Gemini
    and an Azure model: its Messages body translated to their chat, the answer and the stream
    back in Anthropic's shape."""
    llmops = globex(llmops)
    client = llmops.anthropic(REALTIME)
    for model, provider in (("gemini-2.5-flash", "sim-gemini"), ("gpt-4.1-mini", "sim-azure")):
        message = client.messages.create(
            model=model,
            max_tokens=300,
            messages=[{"role": "user", "content": unique("Summarise the quarter")}],
        )
        assert message.type == "message" and message.stop_reason == "end_turn"
        assert message.content[0].text and message.usage.output_tokens > 0
        billed_like(llmops.request_of(message._request_id), provider, model)

        with client.messages.stream(
            model=model,
            max_tokens=300,
            messages=[{"role": "user", "content": unique("Stream the quarter")}],
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text and final.content[0].text == text and final.stop_reason == "end_turn"
