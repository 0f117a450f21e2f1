"""The live tests: llmops itself on a real socket (tests/live/stack.py), pointed at the
session's simulator. Tests talk to it as clients do: HTTP, the official SDK, websockets, a
browser."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live.stack import ADMIN_PASSWORD, ADMIN_USERNAME, API_KEY, ROOT, Llmops, running_llmops

__all__ = ["ADMIN_PASSWORD", "ADMIN_USERNAME", "API_KEY", "ROOT", "Llmops"]


@pytest.fixture(scope="module")
def llmops(simulator_server, tmp_path_factory) -> Iterator[Llmops]:
    with running_llmops(
        simulator_server.base_url,
        tmp_path_factory.mktemp("llmops-live"),
        LLMOPS_CIRCUIT_FAILURES="2",
        LLMOPS_CIRCUIT_COOLDOWN="600",
    ) as stack:
        yield stack
