"""Provider adapters: one module per wire protocol, each wrapping the official SDK.

They import nothing of ours but the small types here, so the router and tests can use
them without a database. Chat calls are async (complete_sync serves sync callers); batch
calls (batch_api) are sync, since they run in workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import async_to_sync

from billing.pricing import Usage
from routing.providers import anthropic_api, openai_api
from routing.providers.errors import ProviderError, stream_cut
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
    "probe",
    "stream",
    "stream_cut",
    "to_openai_chunk",
    "to_openai_response",
]


def _protocol(kind: str):
    return anthropic_api if kind == "anthropic" else openai_api


async def probe(*, kind: str, base_url: str, api_key: str, timeout: float) -> None:
    """Cheap liveness check of a provider (lists its models). Raises ProviderError."""
    await _protocol(kind).probe(base_url=base_url, api_key=api_key, timeout=timeout)


async def complete(endpoint: Endpoint, request: ChatRequest) -> Completion:
    """One whole answer. Raises ProviderError."""
    return await _protocol(endpoint.kind).complete(endpoint, request)


def stream(endpoint: Endpoint, request: ChatRequest) -> AsyncIterator[Delta | Completion]:
    """Deltas as they arrive, then exactly one Completion with the usage. Raises
    ProviderError (after_first_byte says whether output had already been yielded)."""
    return _protocol(endpoint.kind).stream(endpoint, request)


def batch_api(kind: str):
    """The batch half of a wire protocol: a module with batch_create, batch_retrieve,
    batch_cancel, batch_list and batch_results (OpenAI's also uploads, finds and deletes
    files). Sync: batch jobs run in workers."""
    return _protocol(kind)


def complete_sync(endpoint: Endpoint, request: ChatRequest) -> Completion:
    return async_to_sync(complete)(endpoint, request)


def _openai_usage(usage: Usage) -> dict:
    prompt = usage.input_tokens + usage.cached_input_tokens + usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def to_openai_response(completion: Completion, *, id: str, created: int, model: str) -> dict:
    """A chat.completion object, whichever provider answered."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text, "refusal": None},
                "finish_reason": completion.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(completion.usage),
    }


def to_openai_chunk(
    *,
    id: str,
    created: int,
    model: str,
    delta_text: str | None = None,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    role: bool = False,
) -> dict:
    """One chat.completion.chunk: a piece of text, the finish reason, or (include_usage) the
    final usage chunk, which has no choices."""
    chunk = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    if usage is not None:
        return {**chunk, "choices": [], "usage": _openai_usage(usage)}
    delta = {}
    if role:
        delta["role"] = "assistant"
    if delta_text is not None:
        delta["content"] = delta_text
    return {
        **chunk,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
