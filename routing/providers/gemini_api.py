"""Gemini's batch mode via the official google-genai SDK (realtime goes through Gemini's
OpenAI-compatible API: openai_api).

A job's requests go up inline when they are small (one call, results inline in the batch) and
as a JSONL file through the File API otherwise (`{"key", "request"}` lines; results come back
as a JSONL file of `key` + `response` | `error`). The batch's display name carries the job's
input filename (llmops-job-<id>), as OpenAI batches carry it in metadata, so a create whose
answer was lost is found and adopted instead of repeated. Statuses are reported in OpenAI's
vocabulary, as for every provider (types.BatchInfo).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO

import httpx2

from llmops import fastjson, outbound
from routing.protocols import anthropic_messages, gemini, openai_responses
from routing.providers.errors import ProviderError, from_status
from routing.providers.types import (
    BatchInfo,
    BatchOutcome,
    ChatRequest,
    Completion,
    Endpoint,
    stored,
)

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

LABEL = "Gemini API"
# Inline requests may make a body of up to 20 MB; below this the JSONL goes inline (with
# room for the JSON envelope), above it through the File API (up to 2 GB).
INLINE_MAX_BYTES = 16 * 1024 * 1024
# How far back the crash-recovery lookups page through the account's files and batches.
LOOKBACK_ITEMS = 1000
# A batch's display name carries its job and which submit of it it is (llmops-job-7-0), as
# OpenAI metadata would (llmops_job, llmops_submit: absent for the first).
_JOB_OF_NAME = re.compile(r"llmops-job-(\d+)-(\d+)")

# Gemini's job states in OpenAI's batch vocabulary (what the state machine reads).
STATUS = {
    "JOB_STATE_QUEUED": "validating",
    "JOB_STATE_PENDING": "validating",
    "JOB_STATE_RUNNING": "in_progress",
    "JOB_STATE_UPDATING": "in_progress",
    "JOB_STATE_PAUSED": "in_progress",
    "JOB_STATE_CANCELLING": "cancelling",
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "expired",
}


def _failed(exc: Exception) -> ProviderError:
    """Any failure of a call as one ProviderError: the API's status (its `error` envelope
    kept), else the transport's (a timeout may have reached the provider)."""
    from google.genai import errors as genai_errors

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return from_status(
            f"{LABEL} error {exc.code}: {exc.message}",
            exc.code or 500,
            body={"error": exc.details.get("error")} if isinstance(exc.details, dict) else None,
        )
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return ProviderError(f"{LABEL} timed out", retryable=True, maybe_billed=True)
    return ProviderError(
        f"cannot connect to {LABEL}: {exc}", retryable=True, maybe_billed=False, kind="connection"
    )


@contextmanager
def _client(endpoint: Endpoint) -> Iterator[genai.Client]:
    """A sync client for batch calls; SDK errors raised inside come out as ProviderError."""
    # Imported here: only batch workers call Gemini's native API, and the SDK is large.
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types

    t, tls = endpoint.timeouts, outbound.ssl_context()
    client = genai.Client(
        api_key=endpoint.api_key or "unset",
        http_options=types.HttpOptions(
            base_url=endpoint.native_url,
            timeout=int(t.total * 1000),
            # Connects only where the outbound policy allows; no retries (as for the others: a
            # retried create could make a second batch; the job's state machine retries).
            httpx_client=outbound.sync_http_client(),
            # The SDK builds an async client and two more TLS contexts (aiohttp, websockets)
            # besides, each loading the CA bundle unless given one: the process's own.
            client_args={"verify": tls},
            async_client_args={"verify": tls, "ssl": tls},
        ),
    )
    try:
        yield client
    except (genai_errors.APIError, httpx2.HTTPError, TimeoutError) as exc:
        raise _failed(exc) from exc
    finally:
        client.close()


# --- lines -----------------------------------------------------------------------------


def batch_body(request: ChatRequest) -> dict:
    """One request as Gemini's GenerateContentRequest (what cannot be translated was refused
    at admission: routing.asks.refused_param)."""
    if request.kind == "embeddings":
        raise ProviderError(
            f"{LABEL} batch mode takes generateContent requests, not embeddings",
            retryable=False,
            maybe_billed=False,
        )
    if request.kind == "messages":
        messages, options = anthropic_messages.chat_of(request.options)
        request = replace(request, messages=messages, options=options, send_max_tokens=False)
    elif request.kind == "responses":
        messages, options = openai_responses.chat_of(request.options, history=request.history)
        request = replace(request, messages=messages, options=options, send_max_tokens=False)
    options = dict(request.options)
    if request.temperature is not None:
        options.setdefault("temperature", request.temperature)
    return gemini.generate_request(
        messages=request.messages,
        options=options,
        max_tokens=request.max_tokens if request.send_max_tokens else None,
    )


def batch_line(*, custom_id: str, body: dict) -> bytes:
    """One line of a batch's JSONL input file."""
    return json.dumps({"key": custom_id, "request": body}, separators=(",", ":")).encode() + b"\n"


def _inlined(line: dict) -> dict:
    """A file line as the SDK's InlinedRequest: the request's generationConfig and the rest of
    its fields flattened into `config`, the key into metadata (the SDK takes camelCase)."""
    request = dict(line["request"])
    contents = request.pop("contents")
    config = {**request.pop("generationConfig", {}), **request}
    return {"contents": contents, "config": config, "metadata": {"key": line["key"]}}


# --- files -----------------------------------------------------------------------------


def batch_files(endpoint: Endpoint) -> Iterator[tuple[str, str]]:
    """(name, display name) of the account's files, newest first."""
    with _client(endpoint) as client:
        for seen, item in enumerate(client.files.list(config={"page_size": 100})):
            if seen >= LOOKBACK_ITEMS:
                return
            yield item.name or "", item.display_name or ""


def batch_find_file(endpoint: Endpoint, *, filename: str) -> str | None:
    """The name of an input file called `filename` (one whose upload crashed before its name
    was saved), or None."""
    return next((name for name, shown in batch_files(endpoint) if shown == filename), None)


def batch_upload(endpoint: Endpoint, *, filename: str, content: BinaryIO) -> str:
    with _client(endpoint) as client:
        uploaded = client.files.upload(
            file=content, config={"mime_type": "jsonl", "display_name": filename}
        )
    return uploaded.name or ""


def batch_delete_file(endpoint: Endpoint, *, file_id: str) -> None:
    with _client(endpoint) as client:
        client.files.delete(name=file_id)


# --- batches ---------------------------------------------------------------------------


def _time(value) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


def _batch_info(batch: types.BatchJob) -> BatchInfo:
    state = batch.state.value if batch.state is not None else "JOB_STATE_PENDING"
    job = _JOB_OF_NAME.search(batch.display_name or "")
    dest = batch.dest
    stats = batch.completion_stats
    errors = ()
    if state == "JOB_STATE_FAILED" and batch.error is not None:
        errors = (f"{batch.error.code}: {batch.error.message}",)
    return BatchInfo(
        id=batch.name or "",
        status=STATUS.get(state, "in_progress"),
        created_at=_time(batch.create_time),
        total=0,
        completed=int(stats.successful_count or 0) if stats else 0,
        failed=int(stats.failed_count or 0) if stats else 0,
        output_file_id=(dest.file_name if dest else None) or None,
        metadata=_metadata(job),
        errors=errors,
    )


def _metadata(job: re.Match | None) -> dict:
    if job is None:
        return {}
    return {"llmops_job": job[1], **({"llmops_submit": job[2]} if job[2] != "0" else {})}


def batch_create(
    endpoint: Endpoint,
    *,
    model: str,
    display_name: str,
    input_file_id: str = "",
    inline: list[dict] | None = None,
) -> BatchInfo:
    """A batch of the uploaded file (its name), or of `inline` file lines when small."""
    src = [_inlined(line) for line in inline] if inline is not None else input_file_id
    with _client(endpoint) as client:
        batch = client.batches.create(model=model, src=src, config={"display_name": display_name})
    return _batch_info(batch)


def batch_list(endpoint: Endpoint, *, created_after: float) -> Iterator[BatchInfo]:
    """The account's batches, newest first, down to `created_after` (unix seconds)."""
    with _client(endpoint) as client:
        for seen, batch in enumerate(client.batches.list(config={"page_size": 100})):
            info = _batch_info(batch)
            if info.created_at < created_after or seen >= LOOKBACK_ITEMS:
                return
            yield info


def batch_retrieve(endpoint: Endpoint, *, batch_id: str) -> BatchInfo:
    with _client(endpoint) as client:
        return _batch_info(client.batches.get(name=batch_id))


def batch_cancel(endpoint: Endpoint, *, batch_id: str) -> BatchInfo:
    with _client(endpoint) as client:
        client.batches.cancel(name=batch_id)
        return _batch_info(client.batches.get(name=batch_id))


# --- results ---------------------------------------------------------------------------


def _outcome(key: str, response, error) -> BatchOutcome:
    if response is not None:
        try:
            answer, usage = gemini.chat_answer(response, model="")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return BatchOutcome(key, "invalid", error=f"unreadable result: {exc}"[:500])
        return BatchOutcome(
            key,
            "succeeded",
            Completion(
                text=_first_text(answer),
                finish_reason=_first_finish(answer),
                usage=usage,
                model=str(response.get("modelVersion") or ""),
                provider_request_id=response.get("responseId"),
                answer=answer,
                native=response,
            ),
        )
    return BatchOutcome(key, "errored", error=gemini.error_text(error or {})[:500])


def _first_text(answer: dict) -> str:
    choices = answer.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


def _first_finish(answer: dict) -> str:
    choices = answer.get("choices") or [{}]
    return choices[0].get("finish_reason") or "stop"


def _dumped(value) -> dict | None:
    """An SDK object back in the REST (camelCase) form the protocol module reads."""
    if value is None:
        return None
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


def batch_results(endpoint: Endpoint, *, info: BatchInfo) -> Iterator[BatchOutcome]:
    """Every result of an ended batch: its results file streamed line by line (never whole in
    memory), or its inline responses. A key in neither did not run."""
    if info.output_file_id:
        yield from _file_results(endpoint, info.output_file_id)
        return
    with _client(endpoint) as client:
        batch = client.batches.get(name=info.id)
    inlined = (batch.dest.inlined_responses if batch.dest else None) or []
    for item in inlined:
        key = (item.metadata or {}).get("key", "")
        yield _outcome(key, _dumped(item.response), _dumped(item.error))


def _file_results(endpoint: Endpoint, file_name: str) -> Iterator[BatchOutcome]:
    # The SDK's files.download returns the whole file as bytes; a results file of 100,000
    # answers is streamed over plain HTTP instead, with the same key header.
    url = f"{endpoint.native_url.rstrip('/')}/download/v1beta/{file_name}:download"
    t = endpoint.timeouts
    try:
        with (
            outbound.sync_http_client() as client,
            client.stream(
                "GET",
                url,
                params={"alt": "media"},
                headers={"x-goog-api-key": endpoint.api_key or "unset"},
                timeout=httpx2.Timeout(t.total, connect=t.connect),
            ) as response,
        ):
            if response.status_code >= 300:
                response.read()
                raise from_status(
                    f"{LABEL} error {response.status_code} downloading {file_name}",
                    response.status_code,
                )
            yield from _lines(fastjson.lines(response.iter_bytes()))
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise _failed(exc) from exc


def _lines(lines: Iterator[bytes]) -> Iterator[BatchOutcome]:
    for raw in lines:
        if not raw.strip():
            continue
        try:
            line, unstorable = fastjson.stored_line_loads(raw)
        except ValueError:
            yield BatchOutcome("", "invalid", error="a result line is not JSON")
            continue
        if not isinstance(line, dict):
            yield BatchOutcome("", "invalid", error="a result line is not an object")
            continue
        outcome = _outcome(str(line.get("key", "")), line.get("response"), line.get("error"))
        yield stored(outcome, unstorable)
