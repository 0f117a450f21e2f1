"""Anthropic wire protocol via the official SDK, in and out of OpenAI's message shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import replace

import anthropic

from billing.pricing import Usage
from llmops import fastjson, outbound
from routing.protocols import anthropic_messages, openai_chat, openai_responses, translation
from routing.providers.calls import (
    Relay,
    classify,
    client_for,
    open_stream,
    post_json,
    sdk_errors,
    with_deadlines,
)
from routing.providers.errors import ProviderError, stream_cut
from routing.providers.types import (
    BatchInfo,
    BatchOutcome,
    ChatRequest,
    Completion,
    Delta,
    Endpoint,
    stored,
)

LABEL = "Anthropic API"
# Anthropic's stop reasons in OpenAI's vocabulary (what our API and the openai SDK speak).
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def _client(*, base_url: str, api_key: str, timeout) -> anthropic.AsyncAnthropic:
    # base_url without /v1: the SDK's paths already start with it.
    return anthropic.AsyncAnthropic(
        base_url=base_url,
        api_key=api_key or "unset",
        max_retries=0,
        timeout=timeout,
        # Connects only to addresses the outbound policy allows, and follows no redirect.
        http_client=outbound.async_http_client(),
    )


def _timeout(endpoint: Endpoint) -> anthropic.Timeout:
    t = endpoint.timeouts
    return anthropic.Timeout(t.total, connect=t.connect, read=t.total)


def _build(endpoint: Endpoint) -> anthropic.AsyncAnthropic:
    return _client(base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=_timeout(endpoint))


def _translate(exc: anthropic.AnthropicError) -> ProviderError:
    return classify(exc, anthropic, LABEL, after_first_byte=False)


async def probe(endpoint: Endpoint, *, timeout: float) -> None:
    async with _client(
        base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=timeout
    ) as client:
        try:
            await client.models.list(limit=1)
        except anthropic.AnthropicError as exc:
            raise _translate(exc) from exc


# The Messages fields the SDK's create() takes by name; the rest of a translated body (e.g.
# temperature, top_p, which anthropic 2.x's create() does not name) goes in extra_body.
_SDK_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "metadata",
        "output_config",
        "stop_sequences",
        "tool_choice",
        "tools",
    }
)


def _kwargs(request: ChatRequest) -> dict:
    """An OpenAI request as Messages create() arguments (translation.anthropic_body: system
    messages, tool turns, tools, images, structured output; what does not translate was
    refused before the call). A Responses body goes through its chat form."""
    messages, options = request.messages, request.options
    if request.kind == "responses":
        messages, options = openai_responses.chat_of(options, history=request.history)
    body = translation.anthropic_body(
        model=request.model,
        messages=messages,
        options=options,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
    )
    kwargs = {k: v for k, v in body.items() if k in _SDK_FIELDS}
    if extra := {k: v for k, v in body.items() if k not in _SDK_FIELDS}:
        kwargs["extra_body"] = extra
    return kwargs


def _usage(usage) -> Usage:
    # Anthropic's input_tokens already excludes cache reads and writes.
    return Usage(
        input_tokens=usage.input_tokens or 0,
        cached_input_tokens=usage.cache_read_input_tokens or 0,
        cache_write_tokens=usage.cache_creation_input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
    )


# --- the Messages relay (calls.Relay) -------------------------------------------------------
# An Anthropic client's own body goes up as sent, with its anthropic-version and betas, and the
# Message and every stream event come back as the provider sent them.
DEFAULT_VERSION = "2023-06-01"


def _relay_headers(endpoint: Endpoint, client_headers: dict) -> dict:
    return {
        "x-api-key": endpoint.api_key or "unset",
        "anthropic-version": DEFAULT_VERSION,
        **client_headers,
    }


def _messages_url(endpoint: Endpoint) -> str:
    return endpoint.base_url.rstrip("/") + "/v1/messages"


def _relayed(message, *, model: str) -> Completion:
    """A Message, kept whole (the client gets it as the provider sent it)."""
    usage = anthropic_messages.usage_of(message.get("usage")) if isinstance(message, dict) else None
    if usage is None or message.get("type") != "message":
        raise ProviderError(
            f"{LABEL} answered something that is not a message with its usage",
            retryable=False,
            maybe_billed=True,
            kind="bad_answer",
        )
    return Completion(
        text=anthropic_messages.text_of(message),
        finish_reason=anthropic_messages.finish_of(message),
        usage=usage,
        model=str(message.get("model") or model),
        provider_request_id=message.get("id"),
        answer=message,
    )


async def _relay_message(endpoint: Endpoint, request: ChatRequest) -> Completion:
    body = anthropic_messages.upstream_body(model=request.model, options=request.options)
    body.pop("stream", None)
    message = await post_json(
        endpoint,
        _messages_url(endpoint),
        body,
        headers=_relay_headers(endpoint, request.headers),
        sdk=anthropic,
        label=LABEL,
    )
    return _relayed(message, model=request.model)


async def _stream_message(
    endpoint: Endpoint, request: ChatRequest
) -> AsyncIterator[Delta | Completion]:
    """A Messages stream relayed event by event (`message_stop`, the last, marked: the view
    sends it once the answer is billed); the Completion is the Message the events fold into."""
    body = anthropic_messages.upstream_body(model=request.model, options=request.options)
    relay = Relay(
        endpoint,
        _messages_url(endpoint),
        {**body, "stream": True},
        headers=_relay_headers(endpoint, request.headers),
        sdk=anthropic,
        label=LABEL,
    )
    folded = anthropic_messages.MessageFold()

    def take(event: bytes, payload: dict) -> Delta:
        text = folded.add(payload)
        if folded.error is not None:
            raise stream_cut(
                f"{LABEL} stream error: {folded.error}", after_first_byte=relay.produced
            )
        relay.produced = True
        return Delta(text, raw=event, last=payload.get("type") == "message_stop")

    async with aclosing(relay.deltas(take)) as deltas:
        async for delta in deltas:
            yield delta
    if folded.message is None:
        raise stream_cut(
            f"{LABEL} stream ended before message_stop", after_first_byte=relay.produced
        )
    yield _relayed(folded.message, model=request.model)


async def count_tokens(endpoint: Endpoint, *, model: str, options: dict, headers: dict) -> dict:
    """A Messages body's token count from the provider (free there), as it answered it."""
    answer = await post_json(
        endpoint,
        _messages_url(endpoint) + "/count_tokens",
        anthropic_messages.upstream_body(model=model, options=options),
        headers=_relay_headers(endpoint, headers),
        sdk=anthropic,
        label=LABEL,
    )
    if not isinstance(answer, dict) or not isinstance(answer.get("input_tokens"), int):
        raise ProviderError(
            f"{LABEL} answered something that is not a token count",
            retryable=False,
            maybe_billed=False,
            kind="bad_answer",
        )
    return answer


async def complete(endpoint: Endpoint, request: ChatRequest) -> Completion:
    if request.kind == "messages":
        return await _relay_message(endpoint, request)
    client = client_for(endpoint, _build)
    try:
        # The timeout is passed on the call on purpose: when the client's timeout equals the
        # SDK's default (our default 600 s total, 5 s connect does), messages.create refuses
        # any non-streamed max_tokens above ~21,333 with a ValueError ("Streaming is
        # required...") before sending anything — a 500 for every realtime Claude request
        # without max_tokens (64,000 by default). The total timeout bounds the call instead.
        message = await client.messages.create(**_kwargs(request), timeout=_timeout(endpoint))
    except anthropic.AnthropicError as exc:
        raise _translate(exc) from exc
    return _completion(message, usage=_usage(message.usage))


def _completion(message, *, usage: Usage) -> Completion:
    """A Message (the SDK's object) as a Completion whose answer is in OpenAI's chat shape (a
    Responses request's is rendered as a Response where it is recorded:
    conversations.recorded_answer)."""
    answer = translation.openai_answer(message.model_dump())
    return Completion(
        text=openai_chat.first_text(answer),
        finish_reason=openai_chat.first_finish(answer),
        usage=usage,
        model=message.model,
        provider_request_id=message.id,
        answer=answer,
    )


async def stream(endpoint: Endpoint, request: ChatRequest) -> AsyncIterator[Delta | Completion]:
    """The events as Deltas carrying choice 0's OpenAI delta (text, or a tool call's head and
    its arguments in pieces), then the Completion; an Anthropic client's, relayed."""
    if request.kind == "messages":
        async for event in _stream_message(endpoint, request):
            yield event
        return
    client = client_for(endpoint, _build)
    t = endpoint.timeouts
    produced = False
    folded = openai_chat.StreamAnswer()
    tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
    json_blocks: set[int] = set()  # the forced JSON_TOOL call of a json_object: content
    usage, finish, model, ident = None, "stop", request.model, None
    stopped = opened = False
    try:
        response = await open_stream(
            client.messages.create(**_kwargs(request), stream=True),
            first_byte=t.first_byte,
            label=LABEL,
        )
        opened = True
        async with response:
            async for event in with_deadlines(
                response, first_byte=t.first_byte, total=t.total, label=LABEL
            ):
                delta = None
                if event.type == "message_start":
                    usage, model, ident = event.message.usage, event.message.model, event.message.id
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    if block.name == translation.JSON_TOOL:
                        json_blocks.add(event.index)
                        continue
                    tools[event.index] = len(tools)
                    delta = {
                        "tool_calls": [
                            {
                                "index": tools[event.index],
                                "id": block.id,
                                "type": "function",
                                "function": {"name": block.name, "arguments": ""},
                            }
                        ]
                    }
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    delta = {"content": event.delta.text}
                elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    if event.index in json_blocks:
                        delta = {"content": event.delta.partial_json}
                    else:
                        piece = {"arguments": event.delta.partial_json}
                        delta = {"tool_calls": [{"index": tools[event.index], "function": piece}]}
                elif event.type == "message_delta":
                    finish = FINISH.get(event.delta.stop_reason or "", "stop")
                    if json_blocks and finish == "tool_calls":
                        finish = "stop"  # the JSON answer's tool was ours, not the client's
                    # The final usage: output tokens so far, input counts repeated or absent.
                    usage = usage.model_copy(
                        update={
                            k: v
                            for k, v in event.usage.model_dump().items()
                            if v is not None and k in type(usage).model_fields
                        }
                    )
                elif event.type == "message_stop":
                    stopped = True
                if delta is not None:
                    produced = True
                    text = folded.add({"choices": [{"index": 0, "delta": delta}]})
                    yield Delta(text, openai=delta)
    except Exception as exc:
        raise classify(exc, anthropic, LABEL, after_first_byte=produced, opened=opened) from exc
    if usage is None or not stopped:
        raise stream_cut(f"{LABEL} stream ended before message_stop", after_first_byte=produced)
    folded.add({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    answer = {**folded.answer(), "model": model}
    yield Completion(
        text="".join(folded.text),
        finish_reason=finish,
        usage=_usage(usage),
        model=model,
        provider_request_id=ident,
        answer=answer,
    )


# --- message batches (sync: they run in django-q2 workers) -------------------------------
LOOKBACK_ITEMS = 1000


@contextmanager
def _batch_client(endpoint: Endpoint) -> Iterator[anthropic.Anthropic]:
    """A sync client for batch calls; SDK errors raised inside come out as ProviderError."""
    t = endpoint.timeouts
    # max_retries=0: a retried create could make a second batch (see openai_api._batch_client).
    client = anthropic.Anthropic(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key or "unset",
        max_retries=0,
        timeout=anthropic.Timeout(t.total, connect=t.connect),
        http_client=outbound.sync_http_client(),
    )
    with client, sdk_errors(anthropic, anthropic.AnthropicError, LABEL):
        yield client


def batch_params(request: ChatRequest) -> dict:
    """The `params` of one batch request (a Messages body; extra_body flattened into it): an
    Anthropic client's as it sent it."""
    if request.kind == "messages":
        body = anthropic_messages.upstream_body(model=request.model, options=request.options)
        return {k: v for k, v in body.items() if k != "stream"}
    kwargs = _kwargs(request)
    return {**kwargs, **kwargs.pop("extra_body", {})}


def _batch_info(batch) -> BatchInfo:
    c = batch.request_counts
    status = {"in_progress": "in_progress", "canceling": "cancelling"}.get(
        batch.processing_status, "completed"
    )
    if batch.processing_status == "ended":
        # Anthropic has one final state; its counts tell how the batch ended.
        status = "cancelled" if c.canceled else ("expired" if c.expired else "completed")
    return BatchInfo(
        id=batch.id,
        status=status,
        created_at=batch.created_at.timestamp(),
        total=c.processing + c.succeeded + c.errored + c.canceled + c.expired,
        completed=c.succeeded,
        failed=c.errored + c.canceled + c.expired,
    )


def batch_create(endpoint: Endpoint, *, requests: Iterable[dict]) -> BatchInfo:
    """`requests`: {"custom_id", "params"} dicts. The create body is one JSON document (the API
    takes no file), so it is built in memory: at most 256 MB by the provider's limit."""
    with _batch_client(endpoint) as client:
        return _batch_info(client.messages.batches.create(requests=list(requests)))


def batch_list(endpoint: Endpoint, *, created_after: float) -> Iterator[BatchInfo]:
    with _batch_client(endpoint) as client:
        for seen, batch in enumerate(client.messages.batches.list(limit=100)):
            if batch.created_at.timestamp() < created_after or seen >= LOOKBACK_ITEMS:
                return
            yield _batch_info(batch)


def batch_retrieve(endpoint: Endpoint, *, batch_id: str) -> BatchInfo:
    with _batch_client(endpoint) as client:
        return _batch_info(client.messages.batches.retrieve(batch_id))


def batch_cancel(endpoint: Endpoint, *, batch_id: str) -> BatchInfo:
    with _batch_client(endpoint) as client:
        return _batch_info(client.messages.batches.cancel(batch_id))


def _outcome(item) -> BatchOutcome:
    result = item.result
    if result.type == "succeeded":
        message = result.message
        try:
            usage = _usage(message.usage)
        except (AttributeError, TypeError) as exc:
            return BatchOutcome(item.custom_id, "invalid", error=f"unreadable result: {exc}")
        # The Message as the provider sent it too: an Anthropic client's batch returns it.
        native = message.model_dump(mode="json", exclude_unset=True)
        completion = replace(_completion(message, usage=usage), native=native)
        # The SDK's decoder reads NaN and its JSON dump writes it as null: a tool's input (the
        # one free-form object of a Message) is checked before either is kept.
        inputs = [getattr(block, "input", None) for block in message.content]
        return stored(
            BatchOutcome(item.custom_id, "succeeded", completion), fastjson.not_finite(inputs)
        )
    if result.type == "errored":
        error = getattr(getattr(result.error, "error", None), "message", "") or str(result.error)
        return BatchOutcome(item.custom_id, "errored", error=error[:500])
    return BatchOutcome(item.custom_id, "cancelled" if result.type == "canceled" else "expired")


def batch_results(endpoint: Endpoint, *, info: BatchInfo) -> Iterator[BatchOutcome]:
    """An ended batch's results, streamed line by line by the SDK's JSONL decoder."""
    with _batch_client(endpoint) as client:
        for item in client.messages.batches.results(info.id):
            yield _outcome(item)
