"""The simulated Azure OpenAI resource through the openai SDK: auth (api-key and Entra ID),
deployments, chat, embeddings, responses, files, faults and the usage book."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from llmops.simulator.testing import SimulatorHandle

DEPLOYMENT = "llmops-gpt-4o-mini"
MODEL = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello there"}]
SCOPE = "https://cognitiveservices.azure.com/.default"
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
FOURTEEN_DAYS = 14 * 86_400


def entra_token(sim: SimulatorHandle, **form: str) -> httpx2.Response:
    body = {
        "grant_type": "client_credentials",
        "client_id": "llmops-app",
        "client_secret": "s3cret",
        "scope": SCOPE,
        **form,
    }
    body = {k: v for k, v in body.items() if v}
    return httpx2.post(f"{sim.azure_authority}/my-tenant/oauth2/v2.0/token", data=body)


def test_chat_by_deployment_answers_as_the_model_and_bills_under_azure(
    azure: openai.OpenAI, oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    answer = azure.chat.completions.create(model=DEPLOYMENT, messages=HELLO)
    same_model = oai.chat.completions.create(model=MODEL, messages=HELLO)

    assert answer.model == MODEL
    assert answer.choices[0].message.content == same_model.choices[0].message.content
    assert answer.usage.prompt_tokens == same_model.usage.prompt_tokens
    billed = sim.usage()["azure"][MODEL]["realtime"]
    assert billed["requests"] == 1
    assert billed["output_tokens"] == answer.usage.completion_tokens
    assert sim.usage()["openai"][MODEL]["realtime"]["requests"] == 1


def test_every_openai_model_is_a_deployment_of_itself(azure: openai.OpenAI) -> None:
    answer = azure.chat.completions.create(model="gpt-4o", messages=HELLO)

    assert answer.model == "gpt-4o"


def test_streamed_chat_reports_usage_and_bills_as_stream(
    azure: openai.OpenAI, sim: SimulatorHandle
) -> None:
    chunks = list(
        azure.chat.completions.create(
            model=DEPLOYMENT,
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text
    assert usage.completion_tokens == len(text.split(" "))
    assert sim.usage()["azure"][MODEL]["stream"]["output_tokens"] == usage.completion_tokens


def test_tools_give_tool_calls(azure: openai.OpenAI) -> None:
    answer = azure.chat.completions.create(
        model=DEPLOYMENT,
        messages=[{"role": "user", "content": "Use get_weather for Paris"}],
        tools=[WEATHER],
    )

    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)


def test_structured_output_follows_the_schema(azure: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    answer = azure.chat.completions.create(
        model=DEPLOYMENT,
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    )

    assert isinstance(json.loads(answer.choices[0].message.content)["n"], int)


def test_an_entra_token_is_issued_and_accepted(sim: SimulatorHandle) -> None:
    issued = entra_token(sim)
    token = issued.json()

    with openai.OpenAI(
        base_url=sim.azure_base_url, api_key=token["access_token"], max_retries=0
    ) as client:
        answer = client.chat.completions.create(model=DEPLOYMENT, messages=HELLO)

    assert issued.status_code == 200
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == token["ext_expires_in"] == 3599
    assert token["access_token"].count(".") == 2  # a JWT
    assert answer.model == MODEL


def test_an_issued_token_survives_a_reset(sim: SimulatorHandle) -> None:
    token = entra_token(sim).json()["access_token"]
    sim.reset()

    with openai.OpenAI(base_url=sim.azure_base_url, api_key=token, max_retries=0) as client:
        answer = client.chat.completions.create(model=DEPLOYMENT, messages=HELLO)

    assert answer.model == MODEL


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        ({"client_secret": ""}, 401, "invalid_client", 7000216),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"client_id": ""}, 400, "invalid_request", 900144),
        ({"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope", 1002012),
    ],
)
def test_the_token_endpoint_refuses_in_microsofts_shape(
    sim: SimulatorHandle, form: dict, status: int, error: str, code: int
) -> None:
    refused = entra_token(sim, **form)

    body = refused.json()
    assert refused.status_code == status
    assert body["error"] == error
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert body["error_codes"] == [code]


def test_a_fault_refuses_the_service_principal(sim: SimulatorHandle) -> None:
    sim.fault(provider="azure", status=500)  # the resource is down; Entra ID is another service
    sim.fault(provider="azure", endpoint="auth", status=401, count=1)

    refused = entra_token(sim)
    issued = entra_token(sim)

    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert issued.status_code == 200


def test_no_key_is_a_401_in_azures_shape(sim: SimulatorHandle) -> None:
    refused = httpx2.post(
        f"{sim.azure_base_url}/chat/completions", json={"model": DEPLOYMENT, "messages": HELLO}
    )

    assert refused.status_code == 401
    assert refused.json() == {
        "error": {
            "code": "401",
            "message": "Access denied due to invalid subscription key or wrong API endpoint. "
            "Make sure to provide a valid key for an active subscription and use a correct "
            "regional API endpoint for your resource.",
        }
    }


def test_an_openai_style_bearer_key_is_refused(sim: SimulatorHandle) -> None:
    # The SDK sends its api_key as a bearer: a client that forgets `api-key` fails.
    with (
        openai.OpenAI(base_url=sim.azure_base_url, api_key="sim-key", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model=DEPLOYMENT, messages=HELLO)

    assert caught.value.status_code == 401
    assert caught.value.code == "401"


def test_an_unknown_deployment_is_not_found(azure: openai.OpenAI, sim: SimulatorHandle) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        azure.chat.completions.create(model="no-such-deployment", messages=HELLO)

    assert caught.value.code == "DeploymentNotFound"
    assert caught.value.body["message"].startswith(
        "The API deployment for this resource does not exist."
    )
    assert sim.usage()["totals"]["requests"] == 0


def test_configured_deployments_are_served(azure: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.config(azure_deployments={"team-big": "gpt-4.1"})

    answer = azure.chat.completions.create(model="team-big", messages=HELLO)

    assert answer.model == "gpt-4.1"
    assert sim.config()["known_models"]["azure"]["team-big"] == "gpt-4.1"
    assert sim.config()["known_models"]["azure"][DEPLOYMENT] == MODEL


def test_embeddings_by_deployment(azure: openai.OpenAI, sim: SimulatorHandle) -> None:
    answer = azure.embeddings.create(model="llmops-embed-small", input=["a", "b"], dimensions=64)

    assert answer.model == "text-embedding-3-small"
    assert [len(d.embedding) for d in answer.data] == [64, 64]
    assert sim.usage()["azure"]["text-embedding-3-small"]["realtime"]["requests"] == 1


def test_flex_is_not_an_azure_tier(azure: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.chat.completions.create(
            model="llmops-gpt-5-mini", messages=HELLO, service_tier="flex"
        )

    assert caught.value.param == "service_tier"


def test_responses_are_kept_by_the_resource(
    azure: openai.OpenAI, oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    created = azure.responses.create(model=DEPLOYMENT, input="Hello there")
    again = azure.responses.retrieve(created.id)

    assert created.model == MODEL
    assert again.output_text == created.output_text
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(created.id)
    assert sim.usage()["azure"][MODEL]["realtime"]["requests"] == 1
    azure.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        azure.responses.retrieve(created.id)


def test_models_are_listed(azure: openai.OpenAI) -> None:
    ids = [m.id for m in azure.models.list()]

    assert MODEL in ids
    assert "text-embedding-3-small" in ids


def test_files_take_expires_after_and_live_apart_from_openais(
    azure: openai.OpenAI, oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    data = b'{"custom_id": "a"}\n'
    expiring = azure.files.create(
        file=("in.jsonl", data),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": FOURTEEN_DAYS},
    )
    kept = azure.files.create(file=("kept.jsonl", data), purpose="batch")

    assert expiring.expires_at == expiring.created_at + FOURTEEN_DAYS
    assert kept.expires_at is None
    assert azure.files.content(kept.id).content == data
    assert {f.id for f in azure.files.list(purpose="batch")} == {expiring.id, kept.id}
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(kept.id)
    sim.advance(FOURTEEN_DAYS + 1)
    with pytest.raises(openai.NotFoundError):
        azure.files.retrieve(expiring.id)
    assert azure.files.retrieve(kept.id).id == kept.id
    assert azure.files.delete(kept.id).deleted is True


@pytest.mark.parametrize("seconds", [3600, 2_592_001])
def test_file_expiry_outside_azures_bounds_is_refused(azure: openai.OpenAI, seconds: int) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        azure.files.create(
            file=("in.jsonl", b"{}\n"),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": seconds},
        )

    assert caught.value.param == "expires_after.seconds"


def test_at_most_500_batch_files_without_an_expiry(sim: SimulatorHandle) -> None:
    url = f"{sim.azure_base_url}/files"
    headers = {"api-key": "sim"}
    with httpx2.Client(headers=headers) as client:

        def upload(**extra: str) -> httpx2.Response:
            files = {"file": ("in.jsonl", b"{}\n")}
            return client.post(url, files=files, data={"purpose": "batch", **extra})

        statuses = {upload().status_code for _ in range(500)}
        refused = upload()
        with_expiry = upload(
            **{"expires_after[anchor]": "created_at", "expires_after[seconds]": "1209600"}
        )

    assert statuses == {200}
    assert refused.status_code == 400
    assert "500" in refused.json()["error"]["message"]
    assert with_expiry.status_code == 200


def test_faults_target_azure_apart_from_openai(
    azure: openai.OpenAI, oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="azure", endpoint="chat", status=429, retry_after=1, count=1)

    with pytest.raises(openai.RateLimitError) as caught:
        azure.chat.completions.create(model=DEPLOYMENT, messages=HELLO)
    plain = oai.chat.completions.create(model=MODEL, messages=HELLO)
    after = azure.chat.completions.create(model=DEPLOYMENT, messages=HELLO)

    assert caught.value.response.headers["retry-after"] == "1"
    assert plain.model == after.model == MODEL


def test_a_model_fault_hits_the_deployments_of_that_model(
    azure: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="azure", model=MODEL, status=500, count=1)

    with pytest.raises(openai.InternalServerError):
        azure.chat.completions.create(model=DEPLOYMENT, messages=HELLO)


def test_a_stream_cut_fault_breaks_an_azure_stream(
    azure: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="azure", kind="stream_cut", after_tokens=3)

    with pytest.raises(openai.APIError):
        list(azure.chat.completions.create(model=DEPLOYMENT, messages=HELLO, stream=True))

    assert sim.usage()["azure"][MODEL]["stream"]["output_tokens"] == 3
