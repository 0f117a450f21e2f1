"""Frameworks nobody here wrote, against llmops over HTTP on an OpenAI model (relayed) and a
Claude model (translated): LangChain's ChatOpenAI, litellm as a client, instructor and
pydantic-ai — tool calls plain and streamed, the turn after the tool's result, and structured
output in each client's own ways. Each runs in var/clients-venv (`make clients`), since they
pin an openai SDK of their own; the scripts are in tests/clients/ and print what they got."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests" / "clients"
PYTHON = ROOT / "var" / "clients-venv" / "bin" / "python"
WORKLOAD = "product-search"  # gpt-4o-mini, then claude-haiku-4-5
MODELS = pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])
UNITS = {"celsius", "fahrenheit"}


@pytest.fixture(autouse=True)
def _reset_simulator(sim):
    """A simulator without an earlier module's faults (test_fallback leaves its outage)."""


def run_client(llmops, script: str, model: str) -> tuple[dict, list[dict]]:
    """Run one client script against the live stack: what it printed, and the llmops requests
    it made (each must be completed and billed exactly once)."""
    assert PYTHON.exists(), f"{PYTHON} is missing: `make clients` installs the clients"
    before = request_ids(llmops)
    env = {
        **os.environ,
        "LLMOPS_BASE_URL": f"{llmops.base_url}/v1",
        "LLMOPS_API_KEY": llmops.api_key,
        "LLMOPS_WORKLOAD": WORKLOAD,
        "LLMOPS_MODEL": model,
    }
    done = subprocess.run(
        [str(PYTHON), str(CLIENTS / script)],
        env=env,
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    made = [r for r in requests(llmops) if r["id"] not in before]
    assert made, "the client's calls reached no llmops request"
    for request in made:
        assert request["status"] == "completed", request
        assert request["model"] == model, request  # the model the client asked for
        charges = ledger_charges(llmops, request["id"])
        assert len(charges) == 1, (request["id"], charges)
        assert charges[0]["output_tokens"] == request["usage"]["output_tokens"] > 0
    return result, made


def requests(llmops) -> list[dict]:
    status, body = llmops.api("GET", f"/api/v1/requests?workload={WORKLOAD}&limit=500")
    assert status == 200, body
    return body["results"]


def request_ids(llmops) -> set[str]:
    return {r["id"] for r in requests(llmops)}


def ledger_charges(llmops, request_id: str) -> list[dict]:
    status, body = llmops.api("GET", f"/api/v1/ledger?request={request_id}&limit=50")
    assert status == 200, body
    return [e for e in body["results"] if e["kind"] == "charge"]


def is_weather(value: dict) -> bool:
    return (
        set(value) == {"city", "unit", "temperature"}
        and value["unit"] in UNITS
        and isinstance(value["city"], str)
        and isinstance(value["temperature"], int)
    )


@MODELS
def test_langchain_chat_openai_tools_and_structured_output(llmops, model):
    got, _ = run_client(llmops, "langchain_client.py", model)

    assert got["tool_call"]["name"] == "get_weather"
    assert isinstance(got["tool_call"]["arguments"]["city"], str)
    assert got["tool_call"]["arguments"]["unit"] in UNITS
    assert got["first_model"] == model
    assert got["second_text"] and got["second_tool_calls"] == 0
    [streamed] = got["streamed_tool_calls"]
    assert streamed["name"] == "get_weather" and streamed["arguments"]["unit"] in UNITS
    for method in ("function_calling", "json_schema"):
        assert is_weather(got["structured"][method]), (method, got["structured"])
    assert isinstance(got["json_mode"], dict) and got["json_mode"]


@MODELS
def test_litellm_as_a_client(llmops, model):
    got, made = run_client(llmops, "litellm_client.py", model)

    assert got["tool_call"]["name"] == "get_weather"
    assert isinstance(got["tool_call"]["arguments"]["city"], str)
    assert got["first_finish"] == "tool_calls"
    assert got["second_text"]
    [streamed] = got["streamed_tool_calls"]
    assert streamed["name"] == "get_weather" and "city" in streamed["arguments"]
    assert is_weather(got["structured"])
    assert got["stopped_finish"] == "stop" and "three" not in got["stopped_text"]
    # litellm's stop reached llmops as sent (and from there the provider, as the fidelity
    # tests check).
    assert any(r["params"]["options"].get("stop") == ["three"] for r in made)


@MODELS
def test_instructor_in_tools_and_json_schema_modes(llmops, model):
    got, _ = run_client(llmops, "instructor_client.py", model)

    for mode in ("TOOLS", "JSON_SCHEMA"):
        assert is_weather(got[mode]["value"]), (mode, got[mode])
        assert got[mode]["model"] == model


@MODELS
def test_pydantic_ai_agent_with_a_tool_and_a_structured_output(llmops, model):
    got, _ = run_client(llmops, "pydantic_ai_client.py", model)

    assert "get_weather" in got["tool_calls"]
    assert got["tool_ran_with"] and got["tool_ran_with"][0]["city"]
    assert isinstance(got["answer"], str) and got["answer"]
    assert is_weather(got["structured"])


@MODELS
def test_langchain_and_pydantic_ai_on_the_responses_api(llmops, model):
    got, made = run_client(llmops, "responses_clients.py", model)

    assert {r["kind"] for r in made} == {"responses"}
    langchain = got["langchain"]
    assert langchain["tool_call"]["name"] == "get_weather"
    assert isinstance(langchain["tool_call"]["arguments"]["city"], str)
    assert langchain["second_text"] and langchain["second_tool_calls"] == 0
    assert langchain["streamed_text"]
    agent = got["pydantic_ai"]
    assert "get_weather" in agent["tool_calls"]
    assert agent["tool_ran_with"] and agent["tool_ran_with"][0]["city"]
    assert isinstance(agent["answer"], str) and agent["answer"]
    assert is_weather(agent["structured"])
