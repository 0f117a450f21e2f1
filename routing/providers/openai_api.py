"""OpenAI wire protocol (api.openai.com and OpenAI-compatible servers) via the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai

from routing.providers.calls import classify, client_for, open_stream, with_deadlines
from routing.providers.errors import ProviderError, stream_cut
from routing.providers.types import ChatRequest, Completion, Delta, Endpoint, TokenUsage

LABEL = "OpenAI API"


def _client(*, base_url: str, api_key: str, timeout) -> openai.AsyncOpenAI:
    # max_retries=0: retries are our decision (only unbilled failures), not the SDK's.
    # The SDK refuses to build without a key; local servers often need none.
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key or "unset", max_retries=0, timeout=timeout
    )


def _build(endpoint: Endpoint) -> openai.AsyncOpenAI:
    t = endpoint.timeouts
    # read: the longest silence between bytes (a non-streamed answer arrives all at once).
    return _client(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        timeout=openai.Timeout(t.total, connect=t.connect, read=t.total),
    )


def _translate(exc: openai.OpenAIError) -> ProviderError:
    return classify(exc, openai, LABEL, after_first_byte=False)


async def probe(*, base_url: str, api_key: str, timeout: float) -> None:
    async with _client(base_url=base_url, api_key=api_key, timeout=timeout) as client:
        try:
            await client.models.list()
        except openai.OpenAIError as exc:
            raise _translate(exc) from exc


def _kwargs(request: ChatRequest) -> dict:
    kwargs = {"model": request.model, "messages": request.messages}
    # max_completion_tokens is the current name; OpenAI-compatible servers (vLLM, Ollama)
    # often know only max_tokens, which OpenAI still accepts for these models.
    kwargs["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    return kwargs


def _usage(usage) -> TokenUsage:
    if usage is None:
        raise ProviderError(
            f"{LABEL} answered without usage",
            retryable=False,
            maybe_billed=True,
            kind="no_usage",
        )
    cached = getattr(usage.prompt_tokens_details, "cached_tokens", None) or 0
    reasoning = getattr(usage.completion_tokens_details, "reasoning_tokens", None) or 0
    return TokenUsage(
        input_tokens=usage.prompt_tokens - cached,
        cached_input_tokens=cached,
        output_tokens=usage.completion_tokens,
        reasoning_tokens=reasoning,
    )


async def complete(endpoint: Endpoint, request: ChatRequest) -> Completion:
    client = client_for(endpoint, _build)
    try:
        response = await client.chat.completions.create(**_kwargs(request))
    except openai.OpenAIError as exc:
        raise _translate(exc) from exc
    choice = response.choices[0]
    return Completion(
        text=choice.message.content or "",
        finish_reason=choice.finish_reason or "stop",
        usage=_usage(response.usage),
        model=response.model,
        provider_request_id=response.id,
    )


async def stream(endpoint: Endpoint, request: ChatRequest) -> AsyncIterator[Delta | Completion]:
    client = client_for(endpoint, _build)
    t = endpoint.timeouts
    produced, text, finish, usage, model, ident = False, [], "stop", None, request.model, None
    try:
        # include_usage: without it a streamed answer reports no tokens and cannot be billed.
        response = await open_stream(
            client.chat.completions.create(
                **_kwargs(request), stream=True, stream_options={"include_usage": True}
            ),
            first_byte=t.first_byte,
            label=LABEL,
        )
        async with response:
            async for chunk in with_deadlines(
                response, first_byte=t.first_byte, total=t.total, label=LABEL
            ):
                ident, model = chunk.id or ident, chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    if choice.delta and choice.delta.content:
                        produced = True
                        text.append(choice.delta.content)
                        yield Delta(choice.delta.content)
    except Exception as exc:
        raise classify(exc, openai, LABEL, after_first_byte=produced) from exc
    if usage is None:
        raise stream_cut(f"{LABEL} stream ended without usage", after_first_byte=produced)
    yield Completion(
        text="".join(text),
        finish_reason=finish,
        usage=_usage(usage),
        model=model,
        provider_request_id=ident,
    )
