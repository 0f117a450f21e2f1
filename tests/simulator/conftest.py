"""SDK clients for the simulator's own tests (the server and `sim` come from tests/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from llmops.simulator.testing import SimulatorHandle


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # google-genai reads GOOGLE_*/GEMINI_* settings (Vertex mode, API version, keys) from the
    # environment; a developer's shell must not change what a test talks to.
    for name in list(os.environ):
        if name.startswith(("GOOGLE_", "GEMINI_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def _openai_client(simulator_server: SimulatorHandle) -> Iterator[openai.OpenAI]:
    # Building an SDK client costs tens of milliseconds (TLS setup): one per session.
    with openai.OpenAI(
        base_url=simulator_server.openai_base_url, api_key="sim", max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="session")
def _anthropic_client(simulator_server: SimulatorHandle) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=simulator_server.anthropic_base_url, api_key="sim", max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="session")
def _azure_client(simulator_server: SimulatorHandle) -> Iterator[openai.OpenAI]:
    # Azure takes its key in an `api-key` header; the SDK's own bearer is dropped, as a real
    # Azure client must (Azure would take it for an Entra ID token and refuse it).
    def drop_bearer(request) -> None:
        request.headers.pop("Authorization", None)

    http = openai.DefaultHttpxClient(event_hooks={"request": [drop_bearer]})
    with openai.OpenAI(
        base_url=simulator_server.azure_base_url,
        api_key="unused",
        default_headers={"api-key": "sim-azure-key"},
        max_retries=0,
        http_client=http,
    ) as client:
        yield client


@pytest.fixture(scope="session")
def _gemini_openai_client(simulator_server: SimulatorHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=simulator_server.gemini_openai_base_url, api_key="sim", max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="session")
def _gemini_client(simulator_server: SimulatorHandle) -> Iterator[genai.Client]:
    client = genai.Client(
        vertexai=False,
        api_key="sim",
        http_options=genai_types.HttpOptions(base_url=simulator_server.gemini_base_url),
    )
    yield client
    client.close()


@pytest.fixture
def oai(sim: SimulatorHandle, _openai_client: openai.OpenAI) -> openai.OpenAI:
    return _openai_client


@pytest.fixture
def claude(sim: SimulatorHandle, _anthropic_client: anthropic.Anthropic) -> anthropic.Anthropic:
    return _anthropic_client


@pytest.fixture
def azure(sim: SimulatorHandle, _azure_client: openai.OpenAI) -> openai.OpenAI:
    """The simulated Azure OpenAI resource through the openai SDK, with an `api-key`."""
    return _azure_client


@pytest.fixture
def gemini_compat(sim: SimulatorHandle, _gemini_openai_client: openai.OpenAI) -> openai.OpenAI:
    """Gemini's OpenAI-compatible API through the openai SDK."""
    return _gemini_openai_client


@pytest.fixture
def gemini(sim: SimulatorHandle, _gemini_client: genai.Client) -> genai.Client:
    """Gemini's native API through the google-genai SDK."""
    return _gemini_client
