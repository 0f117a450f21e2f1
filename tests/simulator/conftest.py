"""SDK clients for the simulator's own tests (the server and `sim` come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from llmops.simulator.testing import SimulatorHandle


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


@pytest.fixture
def oai(sim: SimulatorHandle, _openai_client: openai.OpenAI) -> openai.OpenAI:
    return _openai_client


@pytest.fixture
def claude(sim: SimulatorHandle, _anthropic_client: anthropic.Anthropic) -> anthropic.Anthropic:
    return _anthropic_client
