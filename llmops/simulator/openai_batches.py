"""OpenAI Batch API, for chat completions, embeddings and responses; through a Dialect also an
Azure OpenAI resource's Global Batch (azure_batches.AzureBatches adds Azure's rules).

A batch is validated and fully planned when it is created (each line's usage
and answer seed), then moves along its Timeline; output and error files are
written the first time somebody sees it ended. Items are billed as they finish.
"""

from __future__ import annotations

import asyncio
import functools
import json
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from llmops.simulator.batches import (
    CANCELLED,
    CANCELLING,
    EXPIRED,
    IN_PROGRESS,
    VALIDATING,
    Snapshot,
    Timeline,
    expire_after_items,
    finish_order,
)
from llmops.simulator.openai_api import (
    OPENAI,
    PROMPT_OVERHEAD_TOKENS,
    ChatCall,
    Dialect,
    OpenAIError,
    endpoint,
    invalid_type,
    json_response,
    missing,
    parse_chat,
    read_json,
)
from llmops.simulator.openai_chat import ChatPlan, completion_json, plan_chat
from llmops.simulator.openai_embeddings import EmbeddingCall, embeddings_json, parse_embeddings
from llmops.simulator.openai_files import (
    DEFAULT_FILE_TTL_S,
    EXPIRY_BOUNDS,
    expires_after,
    list_json,
    page_after,
    query_int,
)
from llmops.simulator.openai_response_params import ResponseCall, check_metadata, parse_response
from llmops.simulator.openai_responses import (
    ResponsePlan,
    StoredResponse,
    output_items,
    plan_response,
    response_json,
)
from llmops.simulator.state import SimFile, SimState
from llmops.simulator.textgen import count_tokens
from llmops.simulator.wire import dumps

CHAT_ENDPOINT = "/v1/chat/completions"
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
RESPONSES_ENDPOINT = "/v1/responses"
# How each batch endpoint checks a line's body; every line's url must be the batch's endpoint.
LINE_PARSERS: dict[
    str, Callable[[dict[str, Any], Any], ChatCall | EmbeddingCall | ResponseCall]
] = {
    CHAT_ENDPOINT: lambda body, models: parse_chat(body, models, in_batch=True),
    EMBEDDINGS_ENDPOINT: parse_embeddings,
    RESPONSES_ENDPOINT: lambda body, models: parse_response(body, models, in_batch=True),
}
# A line as checked, and as planned: what its output or error file line will say.
LineRequest = ChatCall | EmbeddingCall | ResponseCall | OpenAIError
Item = ChatPlan | EmbeddingCall | ResponsePlan | OpenAIError
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_EMBEDDING_INPUTS = 50_000  # across all lines of an embeddings batch
MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024
MAX_REPORTED_ERRORS = 100
# Big batches are planned and written in chunks, yielding to the event loop
# between them, so realtime traffic keeps flowing meanwhile.
PLAN_CHUNK = 2_000
WRITE_CHUNK = 1_000
# Above this size, parsing the input file runs in a worker thread.
THREAD_PARSE_BYTES = 1024 * 1024
ITEM_SERVER_ERROR = OpenAIError(
    500,
    "The server had an error while processing your request. Sorry about that!",
    type="server_error",
)


def _line_error(code: str, message: str, line: int | None, param: str | None = None) -> dict:
    return {"code": code, "message": message, "param": param, "line": line}


@dataclass(slots=True)
class ParsedInput:
    """An input file read line by line: either validation errors or the requests. `model` is
    the catalogue's model, `asked` the name the lines give it (an Azure deployment's)."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    asked: str | None = None
    requests: list[tuple[str, LineRequest]] = field(default_factory=list)


def parse_input(
    data: bytes,
    models: dict[str, Any],
    batch_endpoint: str = CHAT_ENDPOINT,
    *,
    max_requests: int = MAX_BATCH_REQUESTS,
    urls: tuple[str, ...] | None = None,
    resolve: Callable[[str], str | None] | None = None,
) -> ParsedInput:
    """Check a batch input file as OpenAI's validating step does; pure, safe off the loop.

    `models` is the catalogue of the endpoint's kind (chat or embedding models); `urls` what
    a line's url may say (the batch endpoint alone by default); `resolve` maps the model the
    lines name to the catalogue's (an Azure deployment's model; None for an unknown one).
    """
    parse_line = LINE_PARSERS[batch_endpoint]
    urls = urls or (batch_endpoint,)
    embedding_inputs = 0
    parsed = ParsedInput()
    errors = parsed.errors
    if len(data) > MAX_BATCH_FILE_BYTES:
        errors.append(
            _line_error("file_too_large", "The input file is larger than the 200 MB limit.", None)
        )
        return parsed
    if data.count(b"\n") >= max_requests and (
        sum(1 for line in data.split(b"\n") if line.strip()) > max_requests
    ):
        errors.append(
            _line_error(
                "too_many_requests",
                f"The batch input file has more than {max_requests} requests.",
                None,
            )
        )
        return parsed
    seen: set[str] = set()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if len(errors) >= MAX_REPORTED_ERRORS:
            break
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            errors.append(_line_error("invalid_json_line", "This line is not valid JSON.", number))
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(
                _line_error(
                    "missing_custom_id",
                    "Each request needs a string custom_id.",
                    number,
                    "custom_id",
                )
            )
            continue
        if custom_id in seen:
            errors.append(
                _line_error(
                    "duplicate_custom_id",
                    "The custom_id for this request is a duplicate of another request. "
                    "The custom_id parameter must be unique for each request in a batch.",
                    number,
                    "custom_id",
                )
            )
            continue
        seen.add(custom_id)
        if line.get("method") != "POST":
            errors.append(
                _line_error(
                    "invalid_method",
                    "The method must be POST for requests in a batch.",
                    number,
                    "method",
                )
            )
            continue
        if line.get("url") not in urls:
            errors.append(
                _line_error(
                    "invalid_url",
                    f"The url {line.get('url')!r} does not match the batch endpoint "
                    f"{batch_endpoint!r}.",
                    number,
                    "url",
                )
            )
            continue
        body = line.get("body")
        if not isinstance(body, dict):
            errors.append(
                _line_error("invalid_body", "The body must be a JSON object.", number, "body")
            )
            continue
        model = body.get("model")
        if isinstance(model, str):
            if parsed.asked is None:
                parsed.asked = model
                parsed.model = resolve(model) if resolve is not None else model
                if parsed.model not in models:
                    errors.append(
                        _line_error(
                            "model_not_found",
                            f"The model `{model}` does not exist or you do not have access to it.",
                            number,
                            "body.model",
                        )
                    )
                    continue
            elif model != parsed.asked:
                errors.append(
                    _line_error(
                        "mismatched_model",
                        f"Model {model!r} differs from {parsed.asked!r}: a batch input file "
                        "may only use one model.",
                        number,
                        "body.model",
                    )
                )
                continue
            if parsed.model != model:
                body = {**body, "model": parsed.model}
        try:
            request: LineRequest = parse_line(body, models)
        except OpenAIError as exc:
            request = exc
        if isinstance(request, EmbeddingCall):
            embedding_inputs += len(request.inputs)
        if not errors:
            parsed.requests.append((custom_id, request))
    if embedding_inputs > MAX_BATCH_EMBEDDING_INPUTS and len(errors) < MAX_REPORTED_ERRORS:
        errors.append(
            _line_error(
                "too_many_embedding_inputs",
                f"The batch has {embedding_inputs} embedding inputs; at most "
                f"{MAX_BATCH_EMBEDDING_INPUTS} are allowed across all its requests.",
                None,
            )
        )
    if not errors and not parsed.requests:
        errors.append(_line_error("empty_file", "The batch input file is empty.", None))
    if errors:
        parsed.requests.clear()
    return parsed


def estimated_tokens(parsed: ParsedInput) -> int:
    """A valid batch's input tokens as estimated before it runs (what Azure's enqueued-token
    quota counts): each line's prompt, without what a cache or stored conversation adds."""
    total = 0
    for _, line in parsed.requests:
        if isinstance(line, ChatCall):
            total += count_tokens(line.prompt) + PROMPT_OVERHEAD_TOKENS + line.image_tokens
        elif isinstance(line, EmbeddingCall):
            total += line.prompt_tokens
        elif isinstance(line, ResponseCall):
            prompt = "\n".join([line.instructions or "", *line.turn.lines])
            total += count_tokens(prompt) + PROMPT_OVERHEAD_TOKENS + line.turn.image_tokens
    return total


@dataclass(slots=True)
class Batch:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    model: str | None
    timeline: Timeline
    errors: list[dict[str, Any]] | None
    # In finish order: (custom_id, plan) or (custom_id, the error that line gets).
    items: list[tuple[str, Item]]
    failed_prefix: array  # failed_prefix[k]: failed items among the first k to finish
    output_ttl_s: int | None
    deployment: str | None = None  # the name the lines gave the model (Azure's deployment)
    enqueued_tokens: int = 0  # the input tokens it was admitted with (Azure's quota counts them)
    billed: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    written: bool = False
    writing: asyncio.Future[None] | None = None


class OpenAIBatches:
    """The Batch API of an OpenAI-shaped provider. `batches`, `files` and `responses` are its
    stores (OpenAI's own in `state` unless given); the hook methods are where Azure differs."""

    expiry_bounds = EXPIRY_BOUNDS
    default_output_ttl_s: int | None = DEFAULT_FILE_TTL_S  # output files without expires_after
    # Whether a cancelled batch's lines that never ran get `batch_cancelled` error-file lines
    # (counted as failed); OpenAI may simply leave them out (contract §2), Azure writes them.
    cancelled_lines = False

    def __init__(
        self,
        state: SimState,
        dialect: Dialect = OPENAI,
        *,
        batches: dict[str, Batch] | None = None,
        files: dict[str, SimFile] | None = None,
        responses: dict[str, StoredResponse] | None = None,
    ) -> None:
        self.state = state
        self.dialect = dialect
        self.batches = state.openai_batches if batches is None else batches
        self.files = state.files if files is None else files
        self.responses = state.responses if responses is None else responses

    def routes(self) -> list[web.RouteDef]:
        s, d = self.state, self.dialect
        base = d.base
        return [
            web.post(f"{base}/batches", endpoint(s, "batches", self.create, d)),
            web.get(f"{base}/batches", endpoint(s, "batches", self.list_batches, d)),
            web.get(f"{base}/batches/{{batch_id}}", endpoint(s, "batches", self.retrieve, d)),
            web.post(f"{base}/batches/{{batch_id}}/cancel", endpoint(s, "batches", self.cancel, d)),
        ]

    # --- where another provider's batches differ -----------------------------------------

    def line_endpoint(self, value: Any) -> str | None:
        """The LINE_PARSERS key a batch `endpoint` stands for (None: not one we take)."""
        return value if value in LINE_PARSERS else None

    def line_urls(self, endpoint_value: str) -> tuple[str, ...]:
        """What each line's `url` may say."""
        return (endpoint_value,)

    def input_rules(self, source: SimFile) -> tuple[list[dict[str, Any]], int]:
        """Errors found before the lines are read, and how many lines the file may have."""
        return [], MAX_BATCH_REQUESTS

    def resolver(self) -> Callable[[str], str | None] | None:
        """Maps the model the lines name to the catalogue's (None: they name it)."""
        return None

    def admit(self, batch_id: str, parsed: ParsedInput) -> tuple[list[dict[str, Any]] | None, int]:
        """Errors that fail a valid batch at validation (Azure's enqueued-token quota), and the
        tokens the batch enqueues if it is admitted."""
        return None, 0

    def vocabulary(self, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The validation errors in the provider's own codes."""
        return errors

    # --------------------------------------------------------------------------------------

    def _batch(self, batch_id: str) -> Batch:
        found = self.batches.get(batch_id)
        if found is None:
            raise OpenAIError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return found

    async def create(self, request: web.Request, rid: str) -> web.Response:
        state = self.state
        provider = self.dialect.provider
        body = read_json(await request.read())
        input_file_id = body.get("input_file_id")
        if input_file_id is None:
            raise missing("input_file_id")
        if not isinstance(input_file_id, str):
            raise invalid_type("input_file_id", "a string", input_file_id)
        endpoint_value = body.get("endpoint")
        if endpoint_value is None:
            raise missing("endpoint")
        line_endpoint = self.line_endpoint(endpoint_value)
        if line_endpoint is None:
            raise OpenAIError(
                400,
                f"Invalid value for 'endpoint': {endpoint_value!r}. This simulator supports "
                f"{' and '.join(map(repr, LINE_PARSERS))}.",
                param="endpoint",
                code="invalid_value",
            )
        window = body.get("completion_window")
        if window is None:
            raise missing("completion_window")
        if window != "24h":
            raise OpenAIError(
                400,
                f"Invalid value for 'completion_window': {window!r}. Supported values are: '24h'.",
                param="completion_window",
                code="invalid_value",
            )
        metadata = check_metadata(body.get("metadata"))
        output_ttl = expires_after(
            body.get("output_expires_after"), "output_expires_after", self.expiry_bounds
        )
        source = state.file(input_file_id, self.files)
        if source is None:
            raise OpenAIError(404, f"No such File object: {input_file_id}", param="input_file_id")
        if source.purpose != "batch":
            raise OpenAIError(
                400,
                f"The input file {input_file_id} must have purpose 'batch', "
                f"not {source.purpose!r}.",
                param="input_file_id",
                code="invalid_value",
            )

        # A copy: the parse may run in a thread while a control call adds models.
        if line_endpoint == EMBEDDINGS_ENDPOINT:
            models: dict[str, Any] = dict(self.dialect.embedding_models(state))
        else:
            models = dict(self.dialect.chat_models(state))
        early, max_requests = self.input_rules(source)
        if early:
            parsed = ParsedInput(errors=early)
        else:
            parse = functools.partial(
                parse_input,
                source.data,
                models,
                line_endpoint,
                max_requests=max_requests,
                urls=self.line_urls(endpoint_value),
                resolve=self.resolver(),
            )
            if len(source.data) > THREAD_PARSE_BYTES:
                parsed = await asyncio.get_running_loop().run_in_executor(None, parse)
            else:
                parsed = parse()

        batch_id = state.ids.make("batch_")
        created = state.clock.now()
        settings = state.config.for_model(parsed.model)
        errors = self.vocabulary(parsed.errors) or None
        enqueued = 0
        if errors is None:
            errors, enqueued = self.admit(batch_id, parsed)
        if errors is None:
            fault = state.fault(
                provider, "batches", parsed.model, ("batch_fail",), also=parsed.asked
            )
            if fault is not None:
                errors = [
                    _line_error(
                        fault.code or "batch_failed",
                        fault.message or "The batch failed (simulated fault).",
                        None,
                    )
                ]
        count = 0 if errors else len(parsed.requests)
        timeline = Timeline(
            created=created,
            items=count,
            validating_s=settings.validating_s,
            turnaround_s=settings.turnaround_s,
            finalizing_s=settings.finalizing_s,
            cancel_s=settings.cancel_s,
            invalid=errors is not None,
        )
        items: list[tuple[str, Item]] = []
        failed_prefix = array("I", [0])
        if errors is None:
            expire = state.fault(
                provider, "batches", parsed.model, ("batch_expire",), also=parsed.asked
            )
            if expire is not None:
                timeline.expire_after = expire_after_items(count, expire.after_fraction)
            items, failed_prefix = await self._plan_items(batch_id, parsed)
        batch = Batch(
            id=batch_id,
            endpoint=endpoint_value,
            input_file_id=input_file_id,
            completion_window=window,
            metadata=metadata,
            model=parsed.model,
            timeline=timeline,
            errors=errors,
            items=items,
            failed_prefix=failed_prefix,
            output_ttl_s=output_ttl,
            deployment=parsed.asked,
            enqueued_tokens=0 if errors else enqueued,
        )
        self.batches[batch_id] = batch
        return json_response(self._render(batch, await self.advance(batch)), rid)

    async def _plan_items(
        self, batch_id: str, parsed: ParsedInput
    ) -> tuple[list[tuple[str, Item]], array]:
        """Every line's outcome, in finish order, with running counts of failures."""
        state = self.state
        item_fault = state.fault(
            self.dialect.provider,
            "batches",
            parsed.model,
            ("batch_item_error",),
            also=parsed.asked,
        )
        items: list[tuple[str, Item]] = []
        failed_prefix = array("I", [0])
        failed = 0
        requests = parsed.requests
        for position, index in enumerate(finish_order(len(requests), batch_id), start=1):
            custom_id, line = requests[index]
            if item_fault is not None and item_fault.rng.random() < item_fault.rate:
                line = ITEM_SERVER_ERROR
            # An embeddings call is its own plan; a chat call gets its answer and cache hits, a
            # responses call those and its stored conversation (which may be gone: a 400).
            if isinstance(line, ChatCall):
                item: Item = plan_chat(state, line)
            elif isinstance(line, ResponseCall):
                try:
                    item = plan_response(state, line, self.responses)
                except OpenAIError as exc:
                    item = exc
            else:
                item = line
            if isinstance(item, OpenAIError):
                failed += 1
            items.append((custom_id, item))
            failed_prefix.append(failed)
            if position % PLAN_CHUNK == 0:
                await asyncio.sleep(0)
        return items, failed_prefix

    async def retrieve(self, request: web.Request, rid: str) -> web.Response:
        batch = self._batch(request.match_info["batch_id"])
        return json_response(self._render(batch, await self.advance(batch)), rid)

    async def cancel(self, request: web.Request, rid: str) -> web.Response:
        batch = self._batch(request.match_info["batch_id"])
        snapshot = await self.advance(batch)
        if snapshot.phase in (VALIDATING, IN_PROGRESS):
            batch.timeline.cancel_at = self.state.clock.now()
            snapshot = await self.advance(batch)
            body = self._render(batch, snapshot, as_cancelling=True)
            return json_response(body, rid)
        if snapshot.phase == CANCELLING:
            return json_response(self._render(batch, snapshot), rid)
        # Never 409: the SDK would retry it.
        raise OpenAIError(
            400,
            f"Cannot cancel a batch with status '{snapshot.phase}'.",
            param="batch_id",
            code="invalid_state",
        )

    async def list_batches(self, request: web.Request, rid: str) -> web.Response:
        limit = query_int(request.query.get("limit"), "limit", 1, 100, 20)
        batches = list(self.batches.values())
        batches.reverse()
        page, has_more = page_after(batches, request.query.get("after"), limit)
        data = [self._render(batch, await self.advance(batch)) for batch in page]
        return json_response(list_json(data, has_more), rid)

    async def advance_all(self) -> None:
        for batch in list(self.batches.values()):
            if not batch.written:
                await self.advance(batch)

    async def advance(self, batch: Batch) -> Snapshot:
        """Catch a batch up with the sim clock: bill finished items, write files once ended."""
        snapshot = batch.timeline.at(self.state.clock.now())
        if snapshot.done > batch.billed:
            self._bill(batch, batch.billed, snapshot.done)
            batch.billed = snapshot.done
        if snapshot.ended and not batch.written:
            # Shared, so concurrent readers wait for the one writer.
            if batch.writing is None:
                batch.writing = asyncio.ensure_future(self._write_files(batch, snapshot))
            await asyncio.shield(batch.writing)
        return snapshot

    def _bill(self, batch: Batch, start: int, end: int) -> None:
        input_tokens = cached = output = requests = 0
        for _, item in batch.items[start:end]:
            # Chat and responses plans and embeddings calls carry the same usage attributes.
            if not isinstance(item, OpenAIError):
                requests += 1
                input_tokens += item.prompt_tokens
                cached += item.cached_tokens
                output += item.completion_tokens
        batch.input_tokens += input_tokens
        batch.cached_tokens += cached
        batch.output_tokens += output
        if requests and batch.model is not None:
            self.state.usage.add(
                self.dialect.provider,
                batch.model,
                "batch",
                input_tokens=input_tokens,
                cached_input_tokens=cached,
                output_tokens=output,
                requests=requests,
            )

    async def _write_files(self, batch: Batch, snapshot: Snapshot) -> None:
        state = self.state
        timeline = batch.timeline
        ids = state.ids
        ok: list[str] = []
        failed: list[str] = []
        for position, (custom_id, item) in enumerate(batch.items[: snapshot.done], start=1):
            if position % WRITE_CHUNK == 0:
                # Embeddings lines carry whole vectors: let realtime traffic through meanwhile.
                await asyncio.sleep(0)
            request_id = ids.make("req_")
            if isinstance(item, OpenAIError):
                response = {
                    "status_code": item.status,
                    "request_id": request_id,
                    "body": item.body(),
                }
                failed.append(_result_line(ids.make("batch_req_"), custom_id, response, None))
                continue
            if isinstance(item, ChatPlan):
                created = int(timeline.finished_at(position))
                body = completion_json(ids.make("chatcmpl-"), created, item)
            elif isinstance(item, ResponsePlan):
                # [UNCONFIRMED] whether OpenAI stores batch responses; here nothing to GET or
                # continue from.
                created = int(timeline.finished_at(position))
                output = output_items(item, ids)
                body = response_json(item, ids.make("resp_"), created, output, done_at=created)
            else:
                body = embeddings_json(item)
            response = {"status_code": 200, "request_id": request_id, "body": body}
            ok.append(_result_line(ids.make("batch_req_"), custom_id, response, None))
        unrun = None
        if snapshot.phase == EXPIRED:
            unrun = {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window "
                "expired.",
            }
        elif snapshot.phase == CANCELLED and self.cancelled_lines:
            unrun = {
                "code": "batch_cancelled",
                "message": "This request was not executed because the batch was cancelled.",
            }
        if unrun is not None:
            for custom_id, _ in batch.items[snapshot.done :]:
                failed.append(_result_line(ids.make("batch_req_"), custom_id, None, unrun))
        if self.batches.get(batch.id) is not batch:
            return  # reset while writing: the batch is gone
        ended = int(snapshot.ended_at or state.clock.now())
        anchor = int(timeline.created)
        ttl = batch.output_ttl_s
        if ttl is not None:
            expires_at: int | None = anchor + ttl
        elif self.default_output_ttl_s is not None:
            expires_at = ended + self.default_output_ttl_s
        else:
            expires_at = None
        for lines, suffix, attribute in (
            (ok, "output", "output_file_id"),
            (failed, "error", "error_file_id"),
        ):
            if lines:
                stored = SimFile(
                    id=ids.make("file-"),
                    filename=f"{batch.id}_{suffix}.jsonl",
                    purpose="batch_output",
                    data=("\n".join(lines) + "\n").encode(),
                    created_at=ended,
                    expires_at=expires_at,
                )
                self.files[stored.id] = stored
                setattr(batch, attribute, stored.id)
        batch.written = True

    def _render(self, batch: Batch, snapshot: Snapshot, *, as_cancelling: bool = False) -> dict:
        timeline = batch.timeline
        phase = snapshot.phase
        ended_at = _int(snapshot.ended_at)
        if as_cancelling:
            phase, ended_at = CANCELLING, None
        done = snapshot.done
        failed = batch.failed_prefix[done] if batch.items else 0
        if phase == EXPIRED or (phase == CANCELLED and self.cancelled_lines):
            failed += timeline.items - done
        show_files = not as_cancelling
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "model": batch.deployment or batch.model,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": phase,
            "output_file_id": batch.output_file_id if show_files else None,
            "error_file_id": batch.error_file_id if show_files else None,
            "created_at": int(timeline.created),
            "in_progress_at": _int(snapshot.in_progress_at),
            "expires_at": int(timeline.expires_at),
            "finalizing_at": _int(snapshot.finalizing_at),
            "completed_at": ended_at if phase == "completed" else None,
            "failed_at": ended_at if phase == "failed" else None,
            "expired_at": ended_at if phase == EXPIRED else None,
            "cancelling_at": _int(snapshot.cancelling_at),
            "cancelled_at": ended_at if phase == "cancelled" else None,
            "request_counts": {
                "total": timeline.items,
                "completed": done - batch.failed_prefix[done] if batch.items else 0,
                "failed": failed,
            },
            "metadata": batch.metadata,
            "usage": {
                "input_tokens": batch.input_tokens,
                "input_tokens_details": {"cached_tokens": batch.cached_tokens},
                "output_tokens": batch.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": batch.input_tokens + batch.output_tokens,
            },
        }


def _result_line(
    line_id: str, custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None
) -> str:
    return dumps({"id": line_id, "custom_id": custom_id, "response": response, "error": error})


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
