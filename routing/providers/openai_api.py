"""OpenAI wire protocol (api.openai.com and OpenAI-compatible servers) via the official SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import openai
from openai.types.chat import ChatCompletion

from billing.pricing import Usage
from llmops import outbound
from routing.providers.calls import (
    classify,
    client_for,
    open_stream,
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
)

LABEL = "OpenAI API"


def _client(*, base_url: str, api_key: str, timeout) -> openai.AsyncOpenAI:
    # max_retries=0: retries are our decision (only unbilled failures), not the SDK's.
    # The SDK refuses to build without a key; local servers often need none.
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key or "unset",
        max_retries=0,
        timeout=timeout,
        # Connects only to addresses the outbound policy allows, and follows no redirect.
        http_client=outbound.async_http_client(),
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


def _usage(usage) -> Usage:
    if usage is None:
        raise ProviderError(
            f"{LABEL} answered without usage",
            retryable=False,
            maybe_billed=True,
            kind="no_usage",
        )
    cached = getattr(usage.prompt_tokens_details, "cached_tokens", None) or 0
    reasoning = getattr(usage.completion_tokens_details, "reasoning_tokens", None) or 0
    return Usage(
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
    opened = False
    try:
        # include_usage: without it a streamed answer reports no tokens and cannot be billed.
        response = await open_stream(
            client.chat.completions.create(
                **_kwargs(request), stream=True, stream_options={"include_usage": True}
            ),
            first_byte=t.first_byte,
            label=LABEL,
        )
        opened = True
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
        raise classify(exc, openai, LABEL, after_first_byte=produced, opened=opened) from exc
    if usage is None:
        raise stream_cut(f"{LABEL} stream ended without usage", after_first_byte=produced)
    yield Completion(
        text="".join(text),
        finish_reason=finish,
        usage=_usage(usage),
        model=model,
        provider_request_id=ident,
    )


# --- batches (sync: they run in django-q2 workers) ---------------------------------------
# How far back the crash-recovery lookups page through the account's files and batches.
LOOKBACK_ITEMS = 1000


@contextmanager
def _batch_client(endpoint: Endpoint) -> Iterator[openai.OpenAI]:
    """A sync client for batch calls; SDK errors raised inside come out as ProviderError."""
    t = endpoint.timeouts
    # max_retries=0: a retried upload or create could make a second file or batch; the job's
    # state machine retries, and adopts what an earlier attempt made.
    client = openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key or "unset",
        max_retries=0,
        timeout=openai.Timeout(t.total, connect=t.connect),
        http_client=outbound.sync_http_client(),
    )
    with client, sdk_errors(openai, openai.OpenAIError, LABEL):
        yield client


def batch_body(request: ChatRequest) -> dict:
    """The `body` of one batch input line."""
    return _kwargs(request)


def _batch_info(batch) -> BatchInfo:
    counts = batch.request_counts
    errors = ()
    if batch.errors and batch.errors.data:
        errors = tuple(
            f"line {e.line}: {e.message}" if e.line else (e.message or e.code or "error")
            for e in batch.errors.data
        )
    return BatchInfo(
        id=batch.id,
        status=batch.status,
        created_at=float(batch.created_at),
        total=counts.total if counts else 0,
        completed=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        metadata=dict(batch.metadata or {}),
        errors=errors,
    )


def batch_files(endpoint: Endpoint) -> Iterator[tuple[str, str]]:
    """(id, filename) of the account's recent batch input files, newest first."""
    with _batch_client(endpoint) as client:
        for seen, item in enumerate(client.files.list(purpose="batch", limit=100)):
            if seen >= LOOKBACK_ITEMS:
                return
            yield item.id, item.filename


def batch_find_file(endpoint: Endpoint, *, filename: str) -> str | None:
    """The id of a batch input file called `filename` (one whose upload crashed before we saved
    its id), or None."""
    return next((fid for fid, name in batch_files(endpoint) if name == filename), None)


def batch_upload(endpoint: Endpoint, *, filename: str, content: BinaryIO) -> str:
    with _batch_client(endpoint) as client:
        return client.files.create(file=(filename, content), purpose="batch").id


def batch_delete_file(endpoint: Endpoint, *, file_id: str) -> None:
    with _batch_client(endpoint) as client:
        client.files.delete(file_id)


def batch_create(endpoint: Endpoint, *, input_file_id: str, metadata: dict) -> BatchInfo:
    with _batch_client(endpoint) as client:
        batch = client.batches.create(
            input_file_id=input_file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata=metadata,
        )
    return _batch_info(batch)


def batch_list(endpoint: Endpoint, *, created_after: float) -> Iterator[BatchInfo]:
    """The account's batches, newest first, down to `created_after` (unix seconds)."""
    with _batch_client(endpoint) as client:
        for seen, batch in enumerate(client.batches.list(limit=100)):
            if batch.created_at < created_after or seen >= LOOKBACK_ITEMS:
                return
            yield _batch_info(batch)


def batch_retrieve(endpoint: Endpoint, *, batch_id: str) -> BatchInfo:
    with _batch_client(endpoint) as client:
        return _batch_info(client.batches.retrieve(batch_id))


def batch_cancel(endpoint: Endpoint, *, batch_id: str) -> BatchInfo:
    with _batch_client(endpoint) as client:
        return _batch_info(client.batches.cancel(batch_id))


def _outcome(line: dict) -> BatchOutcome:
    custom_id = str(line.get("custom_id", ""))
    response, error = line.get("response"), line.get("error")
    if response and 200 <= int(response.get("status_code") or 0) < 300:
        try:
            completion = ChatCompletion.model_validate(response["body"])
            choice = completion.choices[0]
            return BatchOutcome(
                custom_id,
                "succeeded",
                Completion(
                    text=choice.message.content or "",
                    finish_reason=choice.finish_reason or "stop",
                    usage=_usage(completion.usage),
                    model=completion.model,
                    provider_request_id=completion.id,
                ),
            )
        except (ValueError, KeyError, IndexError, TypeError, ProviderError) as exc:
            return BatchOutcome(custom_id, "invalid", error=f"unreadable result: {exc}"[:500])
    if response:  # it ran and the provider refused it
        body = response.get("body") or {}
        message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        return BatchOutcome(
            custom_id, "errored", error=f"{response.get('status_code')}: {message or body}"[:500]
        )
    code = (error or {}).get("code", "")
    # A request that never ran: expired at the window's end, or dropped by a cancel.
    outcome = {"batch_expired": "expired", "batch_cancelled": "cancelled"}.get(code, "errored")
    return BatchOutcome(custom_id, outcome, error=f"{code}: {(error or {}).get('message', '')}")


def batch_results(endpoint: Endpoint, *, info: BatchInfo) -> Iterator[BatchOutcome]:
    """Every line of an ended batch's output and error files, streamed (never a whole file in
    memory). A custom_id in neither file did not run."""
    with _batch_client(endpoint) as client:
        for file_id in (info.output_file_id, info.error_file_id):
            if not file_id:
                continue
            with client.files.with_streaming_response.content(file_id) as response:
                for raw in response.iter_lines():
                    if not raw.strip():
                        continue
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        yield BatchOutcome("", "invalid", error="a result line is not JSON")
                        continue
                    yield _outcome(line if isinstance(line, dict) else {})
