"""OpenAI wire protocol (api.openai.com and OpenAI-compatible servers) via the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import replace
from typing import BinaryIO

import httpx2
import openai

from llmops import fastjson, outbound
from routing.protocols import anthropic_messages, openai_chat, openai_embeddings, openai_responses
from routing.providers import entra
from routing.providers.calls import (
    Relay,
    classify,
    client_for,
    http_client,
    post_json,
    refused,
    sdk_errors,
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

LABEL = "OpenAI API"


def auth_headers(endpoint: Endpoint, token: str | None = None) -> dict:
    """How a call proves who it is: a bearer key; for Azure OpenAI its `api-key` header, or
    the Entra ID `token` when the resource is reached with a service principal."""
    if endpoint.kind == "azure_openai":
        return (
            {"Authorization": f"Bearer {token}"}
            if endpoint.entra
            else {"api-key": endpoint.api_key}
        )
    # The SDK refuses to build without a key; local servers often need none.
    return {"Authorization": f"Bearer {endpoint.api_key or 'unset'}"}


async def _headers(endpoint: Endpoint) -> dict:
    return auth_headers(endpoint, await entra.atoken(endpoint) if endpoint.entra else None)


def _drop_bearer(request: httpx2.Request) -> None:
    # The SDK always sends its key as a bearer token; an Azure key goes in `api-key` alone.
    request.headers.pop("Authorization", None)


def _sdk_auth(endpoint: Endpoint, http_client):
    """The SDK client's `api_key` and `default_headers`, and its http client fitted for them."""
    if endpoint.kind != "azure_openai":
        return endpoint.api_key or "unset", {}, http_client
    if endpoint.entra:  # the SDK asks for a token before every request: ours are cached
        return (lambda: entra.token(endpoint)), {}, http_client
    http_client.event_hooks["request"].append(_drop_bearer)
    return endpoint.api_key or "unset", auth_headers(endpoint), http_client


def _translate(exc: openai.OpenAIError) -> ProviderError:
    return classify(exc, openai, LABEL, after_first_byte=False)


async def probe(endpoint: Endpoint, *, timeout: float) -> None:
    """List the models (a call that costs nothing) with the endpoint's credentials."""
    client = client_for(endpoint, http_client)
    try:
        response = await client.get(
            _url(endpoint, "/models"), headers=await _headers(endpoint), timeout=timeout
        )
        if response.status_code >= 300:
            raise await refused(response, LABEL)
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise classify(exc, openai, LABEL, after_first_byte=False) from exc


def _chat_form(request: ChatRequest) -> ChatRequest:
    """A request as Chat Completions: an Anthropic Messages body, or a Responses body for a
    provider without the Responses API (Gemini), translated (what cannot be was refused
    before the call); any other as it is."""
    if request.kind == "messages":
        messages, options = anthropic_messages.chat_of(request.options)
    elif request.kind == "responses":
        messages, options = openai_responses.chat_of(request.options, history=request.history)
    else:
        return request
    return replace(request, messages=messages, options=options, kind="chat", send_max_tokens=False)


def _responds(endpoint: Endpoint, request: ChatRequest) -> bool:
    """A Responses request its provider answers as one (Gemini's API has chat only)."""
    return request.kind == "responses" and endpoint.kind != "gemini"


def _kwargs(request: ChatRequest) -> dict:
    """The body sent upstream: the client's as sent, with the provider's model id."""
    request = _chat_form(request)
    body = openai_chat.upstream_body(
        model=request.model, messages=request.messages, options=request.options
    )
    if request.temperature is not None:
        body.setdefault("temperature", request.temperature)
    if request.send_max_tokens and "max_completion_tokens" not in body:
        # llmops' own doors (native API, websocket, history) always bound the answer, by
        # max_tokens: OpenAI-compatible servers (vLLM, Ollama) often know only that name.
        body.setdefault("max_tokens", request.max_tokens)
    return _tiered(body, request)


def _tiered(body: dict, request: ChatRequest) -> dict:
    """The body at the service tier llmops chose (the flex lane), if it chose one."""
    if request.service_tier:
        body["service_tier"] = request.service_tier
    return body


def _no_usage() -> ProviderError:
    return ProviderError(
        f"{LABEL} answered without usage", retryable=False, maybe_billed=True, kind="no_usage"
    )


# --- the relays (calls.Relay): the client's body up as sent, the answer back as sent -----


def _url(endpoint: Endpoint, path: str = "/chat/completions") -> str:
    return endpoint.base_url.rstrip("/") + path


async def _relay(endpoint: Endpoint, path: str, body: dict) -> Relay:
    return Relay(
        endpoint,
        _url(endpoint, path),
        body,
        headers=await _headers(endpoint),
        sdk=openai,
        label=LABEL,
    )


async def _post(endpoint: Endpoint, path: str, body: dict, *, expect: str, what: str) -> dict:
    """POST a body and read the JSON answer, which must hold a list under `expect`."""
    answer = await post_json(
        endpoint,
        _url(endpoint, path),
        body,
        headers=await _headers(endpoint),
        sdk=openai,
        label=LABEL,
    )
    if not isinstance(answer, dict) or not isinstance(answer.get(expect), list):
        raise ProviderError(
            f"{LABEL} answered something that is not {what}",
            retryable=False,
            maybe_billed=True,
            kind="bad_answer",
        )
    return answer


async def complete(endpoint: Endpoint, request: ChatRequest) -> Completion:
    if request.kind == "embeddings":
        return await _embed(endpoint, request)
    if _responds(endpoint, request):
        return await _respond(endpoint, request)
    body = _kwargs(request)
    body.pop("stream_options", None)
    body["stream"] = False
    answer = await _post(
        endpoint, "/chat/completions", body, expect="choices", what="a chat.completion"
    )
    return _chatted(answer, model=request.model)


def _chatted(answer: dict, *, model: str) -> Completion:
    """A chat.completion, kept whole but for its usage (billed apart)."""
    usage = openai_chat.usage_of(answer.get("usage"))
    if usage is None:
        raise _no_usage()
    kept = openai_chat.answer_of(answer)
    return Completion(
        text=openai_chat.first_text(kept),
        finish_reason=openai_chat.first_finish(kept),
        usage=usage,
        model=str(answer.get("model") or model),
        provider_request_id=answer.get("id"),
        answer=kept,
    )


async def _embed(endpoint: Endpoint, request: ChatRequest) -> Completion:
    """Embeddings, relayed: the body as the client sent it, the answer as the provider sent it
    (the vectors in whichever encoding the client asked for)."""
    body = openai_embeddings.upstream_body(model=request.model, options=request.options)
    answer = await _post(endpoint, "/embeddings", body, expect="data", what="an embeddings list")
    return _embedded(answer, model=request.model)


def _embedded(answer: dict, *, model: str) -> Completion:
    usage = openai_chat.usage_of(answer.get("usage"))
    if usage is None:
        raise _no_usage()
    return Completion(
        text="",
        finish_reason="stop",
        usage=usage,
        model=str(answer.get("model") or model),
        answer=answer,
    )


# --- the Responses relay -----------------------------------------------------------------
# As chat: the client's body up as sent, the Response and every stream event back as sent.


async def _respond(endpoint: Endpoint, request: ChatRequest) -> Completion:
    body = _tiered(
        openai_responses.upstream_body(model=request.model, options=request.options), request
    )
    body.pop("stream_options", None)
    body["stream"] = False
    answer = await _post(endpoint, "/responses", body, expect="output", what="a response")
    return _responded(answer, model=request.model)


def _responded(answer: dict, *, model: str) -> Completion:
    """A Response, kept whole (the client gets it as the provider sent it)."""
    usage = openai_responses.usage_of(answer.get("usage"))
    if usage is None:
        raise _no_usage()
    return Completion(
        text=openai_responses.text_of(answer),
        finish_reason=openai_responses.finish_of(answer),
        usage=usage,
        model=str(answer.get("model") or model),
        provider_request_id=answer.get("id"),
        answer=answer,
    )


async def _stream_responses(
    endpoint: Endpoint, request: ChatRequest
) -> AsyncIterator[Delta | Completion]:
    """A Responses stream relayed event by event; the Completion is the Response that
    `response.completed` (or `.incomplete`) carries, with its usage."""
    body = _tiered(
        openai_responses.upstream_body(model=request.model, options=request.options), request
    )
    relay = await _relay(endpoint, "/responses", {**body, "stream": True})
    folded = openai_responses.StreamFold()

    def take(event: bytes, payload: dict) -> Delta:
        text = folded.add(payload)
        if folded.error is not None or payload.get("type") == "response.failed":
            failed = folded.error or (payload.get("response") or {}).get("error")
            raise stream_cut(f"{LABEL} stream error: {failed}", after_first_byte=relay.produced)
        relay.produced = True
        return Delta(text, raw=event, last=folded.response is not None)

    async with aclosing(relay.deltas(take)) as deltas:
        async for delta in deltas:
            yield delta
    if folded.response is None:
        raise stream_cut(
            f"{LABEL} stream ended before its response", after_first_byte=relay.produced
        )
    yield _responded(folded.response, model=request.model)


async def stream(endpoint: Endpoint, request: ChatRequest) -> AsyncIterator[Delta | Completion]:
    """The provider's events relayed as Deltas carrying their bytes, then the Completion. The
    usage is always asked for (a stream without it cannot be billed); when the client did not
    ask, the usage-only chunk is kept from it."""
    if _responds(endpoint, request):
        async for event in _stream_responses(endpoint, request):
            yield event
        return
    body = _kwargs(request)
    body["stream"] = True
    options = dict(body.get("stream_options") or {})
    client_wants_usage = bool(options.get("include_usage"))
    # An Anthropic client's stream, or a Responses one Gemini answers in chat, is rendered
    # from choice 0's deltas (the view's), not relayed.
    translated = request.kind in ("messages", "responses")
    body["stream_options"] = {**options, "include_usage": True}
    relay = await _relay(endpoint, "/chat/completions", body)
    folded = openai_chat.StreamAnswer()

    def take(event: bytes, chunk: dict) -> Delta | None:
        if "error" in chunk and "choices" not in chunk:
            raise stream_cut(
                f"{LABEL} stream error: {chunk['error']}", after_first_byte=relay.produced
            )
        text = folded.add(chunk)
        if translated:
            delta = openai_chat.first_delta(chunk)
            relay.produced = relay.produced or bool(delta)
            return Delta(text, openai=delta) if delta else None
        if chunk.get("usage") and not chunk.get("choices") and not client_wants_usage:
            return None
        relay.produced = relay.produced or bool(chunk.get("choices"))
        return Delta(text, raw=event)

    async with aclosing(relay.deltas(take)) as deltas:
        async for delta in deltas:
            yield delta
    usage = openai_chat.usage_of(folded.usage)
    if usage is None:
        raise stream_cut(f"{LABEL} stream ended without usage", after_first_byte=relay.produced)
    answer = folded.answer()
    yield Completion(
        text="".join(folded.text),
        finish_reason=openai_chat.first_finish(answer),
        usage=usage,
        model=str(answer.get("model") or request.model),
        provider_request_id=answer.get("id"),
        answer=answer,
    )


async def delete_response(endpoint: Endpoint, response_id: str) -> None:
    """Delete a stored Response at the provider (one it no longer has is deleted already)."""
    client = client_for(endpoint, http_client)
    try:
        response = await client.delete(
            _url(endpoint, f"/responses/{response_id}"), headers=await _headers(endpoint)
        )
        if response.status_code >= 300 and response.status_code != 404:
            raise await refused(response, LABEL)
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise classify(exc, openai, LABEL, after_first_byte=False) from exc


# --- batches (sync: they run in django-q2 workers) ---------------------------------------
# How far back the crash-recovery lookups page through the account's files and batches.
LOOKBACK_ITEMS = 1000
# The error code of a batch refused whole because the queue is full (it fails at validation).
QUOTA_REFUSAL = "token_limit_exceeded"
# Azure keeps at most 500 batch files per resource without an expiry, 10,000 with one, and
# takes 100,000 lines (not 50,000) only from a file uploaded with one: llmops always sets
# it, on the input file and (output_expires_after) on the batch's results. 14 days is
# Azure's shortest; results are ingested within minutes of the batch's end.
AZURE_EXPIRY = {"anchor": "created_at", "seconds": 14 * 24 * 3600}


@contextmanager
def _batch_client(endpoint: Endpoint) -> Iterator[openai.OpenAI]:
    """A sync client for batch calls; SDK errors raised inside come out as ProviderError."""
    t = endpoint.timeouts
    # max_retries=0: a retried upload or create could make a second file or batch; the job's
    # state machine retries, and adopts what an earlier attempt made.
    api_key, headers, http = _sdk_auth(endpoint, outbound.sync_http_client())
    client = openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=api_key,
        default_headers=headers,
        max_retries=0,
        timeout=openai.Timeout(t.total, connect=t.connect),
        http_client=http,
    )
    with client, sdk_errors(openai, openai.OpenAIError, LABEL):
        yield client


def batch_body(request: ChatRequest) -> dict:
    """The `body` of one batch input line (the Batch API streams nothing)."""
    if request.kind == "embeddings":
        return openai_embeddings.upstream_body(model=request.model, options=request.options)
    if request.kind == "responses":
        body = openai_responses.upstream_body(model=request.model, options=request.options)
        return {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    body = _kwargs(request)
    body.pop("stream", None)
    body.pop("stream_options", None)
    return body


def _batch_info(batch) -> BatchInfo:
    counts = batch.request_counts
    errors, codes = (), set()
    if batch.errors and batch.errors.data:
        codes = {e.code for e in batch.errors.data}
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
        quota_refused=batch.status == "failed" and QUOTA_REFUSAL in codes,
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
    extra = {"expires_after": AZURE_EXPIRY} if endpoint.kind == "azure_openai" else {}
    with _batch_client(endpoint) as client:
        return client.files.create(file=(filename, content), purpose="batch", **extra).id


def batch_delete_file(endpoint: Endpoint, *, file_id: str) -> None:
    with _batch_client(endpoint) as client:
        client.files.delete(file_id)


def batch_create(
    endpoint: Endpoint, *, input_file_id: str, metadata: dict, url: str = "/v1/chat/completions"
) -> BatchInfo:
    """A batch of the uploaded file, whose lines all ask `url` (as OpenAI requires)."""
    extra = {"output_expires_after": AZURE_EXPIRY} if endpoint.kind == "azure_openai" else {}
    with _batch_client(endpoint) as client:
        batch = client.batches.create(
            input_file_id=input_file_id,
            endpoint=url,
            completion_window="24h",
            metadata=metadata,
            **extra,
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
            body = response["body"]
            if isinstance(body, dict) and body.get("object") == "list":  # an embeddings line
                if not isinstance(body.get("data"), list):
                    raise ValueError("an embeddings answer without data")
                return BatchOutcome(custom_id, "succeeded", _embedded(body, model=""))
            if isinstance(body, dict) and body.get("object") == "response":  # a Responses line
                if not isinstance(body.get("output"), list):
                    raise ValueError("a response without output")
                return BatchOutcome(custom_id, "succeeded", _responded(body, model=""))
            _chat_shape_check(body)
            return BatchOutcome(custom_id, "succeeded", _chatted(body, model=""))
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


def _chat_shape_check(body) -> None:
    """Raise ValueError naming what makes `body` no chat.completion. What the ledger and the
    request record read of it, checked by hand: the SDK's model_validate built and checked
    the whole object tree per line, a sixth of a 50,000-line ingest (bench/batch_pipeline.py)."""
    if not isinstance(body, dict):
        raise ValueError("the body is not an object")
    for name in ("id", "model"):
        if not isinstance(body.get(name), str):
            raise ValueError(f"{name} is not a string")
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise ValueError("choices is not a list")
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise ValueError("a choice without a message")
        if not isinstance(choice["message"].get("content") or "", str):
            raise ValueError("a message's content is not a string")


def batch_results(endpoint: Endpoint, *, info: BatchInfo) -> Iterator[BatchOutcome]:
    """Every line of an ended batch's output and error files, streamed (never a whole file in
    memory). A custom_id in neither file did not run."""
    with _batch_client(endpoint) as client:
        for file_id in (info.output_file_id, info.error_file_id):
            if not file_id:
                continue
            with client.files.with_streaming_response.content(file_id) as response:
                for raw in fastjson.lines(response.iter_bytes()):
                    if not raw.strip():
                        continue
                    try:
                        line, unstorable = fastjson.stored_line_loads(raw)
                    except ValueError:
                        yield BatchOutcome("", "invalid", error="a result line is not JSON")
                        continue
                    yield stored(_outcome(line if isinstance(line, dict) else {}), unstorable)
