"""Provider adapters: one module per wire protocol, each wrapping the official SDK.

They import nothing of ours but the small types here, so the router and tests can use
them without a database. Chat calls are async (complete_sync serves sync callers); batch
calls (batch_api) are sync, since they run in workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import async_to_sync

from routing.providers import anthropic_api, gemini_api, openai_api
from routing.providers.errors import BUSY_KINDS, ProviderError, stream_cut
from routing.providers.types import (
    BatchInfo,
    BatchOutcome,
    ChatRequest,
    Completion,
    Delta,
    Endpoint,
    Timeouts,
)

__all__ = [
    "BUSY_KINDS",
    "BatchInfo",
    "BatchOutcome",
    "ChatRequest",
    "Completion",
    "Delta",
    "Endpoint",
    "ProviderError",
    "Timeouts",
    "batch_api",
    "complete",
    "complete_sync",
    "count_tokens",
    "delete_response",
    "probe",
    "stream",
    "stream_cut",
]


def _protocol(kind: str):
    return anthropic_api if kind == "anthropic" else openai_api


async def probe(endpoint: Endpoint, *, timeout: float) -> None:
    """Cheap liveness check of a provider (lists its models). Raises ProviderError."""
    await _protocol(endpoint.kind).probe(endpoint, timeout=timeout)


async def complete(endpoint: Endpoint, request: ChatRequest) -> Completion:
    """One whole answer. Raises ProviderError."""
    return await _protocol(endpoint.kind).complete(endpoint, request)


def stream(endpoint: Endpoint, request: ChatRequest) -> AsyncIterator[Delta | Completion]:
    """Deltas as they arrive, then exactly one Completion with the usage. Raises
    ProviderError (after_first_byte says whether output had already been yielded)."""
    return _protocol(endpoint.kind).stream(endpoint, request)


async def count_tokens(endpoint: Endpoint, *, model: str, options: dict, headers: dict) -> dict:
    """An Anthropic Messages body's token count from a Claude provider. Raises ProviderError."""
    return await anthropic_api.count_tokens(endpoint, model=model, options=options, headers=headers)


async def delete_response(endpoint: Endpoint, response_id: str) -> None:
    """Delete a Response an OpenAI-protocol provider stores. Raises ProviderError."""
    await openai_api.delete_response(endpoint, response_id)


def batch_api(kind: str):
    """The batch half of a wire protocol: a module with batch_create, batch_retrieve,
    batch_cancel, batch_list and batch_results (OpenAI's and Gemini's also upload, find and
    delete files). Gemini's batch mode is its native API, not the OpenAI-compatible one its
    realtime calls use. Sync: batch jobs run in workers."""
    return gemini_api if kind == "gemini" else _protocol(kind)


def complete_sync(endpoint: Endpoint, request: ChatRequest) -> Completion:
    return async_to_sync(complete)(endpoint, request)
