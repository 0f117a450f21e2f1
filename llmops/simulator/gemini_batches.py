"""Gemini batch mode, as google-genai 3.6.1 sends and reads it (batches.py, _transformers.py).

  POST {v}/models/{model}:batchGenerateContent
       {"batch": {"displayName", "inputConfig":
          {"requests": {"requests": [{"request": GenerateContentRequest, "metadata": {...}}]}}
          (inline, the body at most 20 MB) | {"fileName": "files/…"} (a JSONL file of
          {"key", "request"} lines, uploaded through the File API)}}
  GET  {v}/batches/{id}, GET {v}/batches (pageSize 1-1000, default 50; pageToken; newest
       first), POST {v}/batches/{id}:cancel, DELETE {v}/batches/{id}
A batch is answered as an Operation: {"name": "batches/…", "metadata": {"@type", "name",
"model", "displayName", "state": BATCH_STATE_*, "createTime", "updateTime", "endTime",
"batchStats": {requestCount, successfulRequestCount, failedRequestCount,
pendingRequestCount} (int64, so strings), "output"}, "done", "response" | "error"}. The SDK
maps BATCH_STATE_* to JobState JOB_STATE_* (t_job_state) and `output` to `dest`.

States follow the shared batch clock (batches.Timeline) and the same timing config keys as
the other batches: PENDING while validating, RUNNING until every request has run (and while
finalizing), then SUCCEEDED; EXPIRED past the 48-hour window (a turnaround longer than that, or a
`batch_expire` fault) with what ran kept; FAILED at validation (an input file line that is not
a {"key", "request"} object, or a `batch_fail` fault), with the Operation's `error`. A request the
model refuses (a GenerateContentRequest error, e.g. maxOutputTokens over the model's limit, or a
`batch_item_error` fault) gets an `error` result ({code, message, status}) under its key while
the others run. Cancel ends a pending or running batch at once as CANCELLED, keeping the results
of what finished.

Results, once the batch has ended: inline input gets `output.inlinedResponses.inlinedResponses`
(in input order, each with its request's metadata), file input a generated JSONL file
`output.responsesFile` ("files/batch-…", in finish order) of {"key", "response"} or
{"key", "error"} lines. Requests that never ran have no result. Usage is booked as requests
finish, provider `gemini`, mode `batch`.
"""

from __future__ import annotations

import asyncio
import json
from array import array
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llmops.simulator.batches import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXPIRED,
    FAILED,
    FINALIZING,
    IN_PROGRESS,
    VALIDATING,
    Snapshot,
    Timeline,
    expire_after_items,
    finish_order,
)
from llmops.simulator.gemini_api import (
    NATIVE,
    fault_error,
    google_endpoint,
    google_json,
)
from llmops.simulator.gemini_files import GeminiFile, find_file, page_after, store_file
from llmops.simulator.gemini_generate import (
    FAULT_MESSAGES,
    GeneratePlan,
    GoogleError,
    invalid,
    not_found_model,
    parse_generate,
    pick,
    plan_generate,
    response_json,
)
from llmops.simulator.state import SimState
from llmops.simulator.wire import dumps, pause, rfc3339

STATES = {
    VALIDATING: "BATCH_STATE_PENDING",
    IN_PROGRESS: "BATCH_STATE_RUNNING",
    FINALIZING: "BATCH_STATE_RUNNING",
    CANCELLING: "BATCH_STATE_RUNNING",
    COMPLETED: "BATCH_STATE_SUCCEEDED",
    FAILED: "BATCH_STATE_FAILED",
    CANCELLED: "BATCH_STATE_CANCELLED",
    EXPIRED: "BATCH_STATE_EXPIRED",
}
WINDOW_S = 48 * 3600
MAX_INLINE_BYTES = 20 * 1024 * 1024
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
PLAN_CHUNK = 2_000
WRITE_CHUNK = 1_000
THREAD_PARSE_BYTES = 1024 * 1024
ITEM_ERROR = GoogleError(500, FAULT_MESSAGES[500])

Item = GeneratePlan | GoogleError
# A request as read: its input position, its key (file lines) or metadata (inline), and the
# checked request or the error it gets.
Entry = tuple[int, Any, Any]


@dataclass(slots=True)
class GeminiBatch:
    id: str
    model: str
    display_name: str | None
    timeline: Timeline
    input_file: str | None  # None: inline requests
    # In finish order: (input position, key or metadata, plan or error).
    items: list[tuple[int, Any, Item]]
    failed_prefix: array  # failed_prefix[k]: errors among the first k to finish
    error: GoogleError | None = None  # why it failed, if it did
    billed: int = 0
    output: dict[str, Any] | None = None  # metadata.output, once it has ended
    writing: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        return f"batches/{self.id}"


def read_lines(data: bytes, model: str, max_tokens: int) -> tuple[list[Entry], GoogleError | None]:
    """A JSONL input file's requests, each checked (an error result for a bad one), or the
    error that fails the whole batch; pure, safe off the loop."""
    entries: list[Entry] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
            return [], invalid(
                f"Line {number} of the input file is not a JSON object with a `request` object."
            )
        entries.append(
            (len(entries), line.get("key"), _checked(line["request"], model, max_tokens))
        )
    if not entries:
        return [], invalid("The input file has no requests.")
    return entries, None


def _checked(request: Any, model: str, max_tokens: int) -> Any:
    try:
        return parse_generate(request, model, max_tokens)
    except GoogleError as exc:
        return exc


class GeminiBatches:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        s = self.state
        one = f"{NATIVE}/batches/{{batch}}"
        return [
            web.get(f"{NATIVE}/batches", google_endpoint(s, "batches", self.list_batches)),
            web.get(one, google_endpoint(s, "batches", self.retrieve)),
            web.post(one, google_endpoint(s, "batches", self.cancel)),
            web.delete(one, google_endpoint(s, "batches", self.delete)),
        ]

    def _batch(self, name: str) -> GeminiBatch:
        found = self.state.gemini_batches.get(name.removeprefix("batches/"))
        if found is None:
            raise GoogleError(404, f"Batch batches/{name} not found.")
        return found

    async def create(self, request: web.Request, model: str) -> web.Response:
        """`:batchGenerateContent`, routed here by the model actions (gemini_api)."""
        state = self.state
        if (request.content_length or 0) > MAX_INLINE_BYTES:
            raise GoogleError(
                400, f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes."
            )
        raw = await request.read()
        if len(raw) > MAX_INLINE_BYTES:
            raise GoogleError(
                400, f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes."
            )
        fault = state.fault("gemini", "batches", model, ("error", "stall"))
        if fault is not None:
            if fault.kind == "error":
                raise fault_error(fault)
            await pause(fault.stall_s)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise invalid("Invalid JSON payload received. Unexpected token.") from None
        models = state.config.models["gemini"]
        if model not in models:
            raise not_found_model(model, "batchGenerateContent")
        batch = pick(body, "batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            raise invalid("* BatchGenerateContentRequest.batch: batch is required")
        config = pick(batch, "inputConfig")
        if not isinstance(config, dict):
            raise invalid(
                "* BatchGenerateContentRequest.batch.input_config: input_config is required"
            )
        inline, file_name = pick(config, "requests"), pick(config, "fileName")
        if (inline is None) == (file_name is None):
            raise invalid(
                "* BatchGenerateContentRequest.batch.input_config: exactly one of requests and "
                "file_name must be set."
            )
        display = pick(batch, "displayName")
        error: GoogleError | None = None
        if inline is not None:
            entries = self._inline(inline, model, models[model])
        else:
            source = find_file(state, str(file_name))
            if source is None:
                raise GoogleError(404, f"File {file_name} not found.")
            if len(source.data) > THREAD_PARSE_BYTES:
                entries, error = await asyncio.get_running_loop().run_in_executor(
                    None, read_lines, source.data, model, models[model]
                )
            else:
                entries, error = read_lines(source.data, model, models[model])
        if error is None:
            failing = state.fault("gemini", "batches", model, ("batch_fail",))
            if failing is not None:
                error = GoogleError(
                    failing.status or 500, failing.message or "The batch failed (simulated fault)."
                )
        batch_id = state.ids.make("")
        settings = state.config.for_model(model)
        count = 0 if error else len(entries)
        timeline = Timeline(
            created=state.clock.now(),
            items=count,
            validating_s=settings.validating_s,
            turnaround_s=settings.turnaround_s,
            finalizing_s=settings.finalizing_s,
            cancel_s=0,  # Gemini has no cancelling state: a cancel ends the batch at once
            invalid=error is not None,
            window_s=WINDOW_S,
        )
        items: list[tuple[int, Any, Item]] = []
        failed_prefix = array("I", [0])
        if error is None:
            expire = state.fault("gemini", "batches", model, ("batch_expire",))
            if expire is not None:
                timeline.expire_after = expire_after_items(count, expire.after_fraction)
            items, failed_prefix = await self._plan(batch_id, model, entries)
        found = GeminiBatch(
            id=batch_id,
            model=model,
            display_name=display if isinstance(display, str) else None,
            timeline=timeline,
            input_file=None if inline is not None else str(file_name),
            items=items,
            failed_prefix=failed_prefix,
            error=error,
        )
        state.gemini_batches[batch_id] = found
        return google_json(self._render(found, await self.advance(found)))

    @staticmethod
    def _inline(inline: Any, model: str, max_tokens: int) -> list[Entry]:
        requests = pick(inline, "requests") if isinstance(inline, dict) else None
        where = "* BatchGenerateContentRequest.batch.input_config.requests.requests"
        if not isinstance(requests, list) or not requests:
            raise invalid(f"{where}: at least one request is required")
        entries: list[Entry] = []
        for index, entry in enumerate(requests):
            if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
                raise invalid(f"{where}[{index}].request: request is required")
            metadata = entry.get("metadata")
            entries.append((index, metadata, _checked(entry["request"], model, max_tokens)))
        return entries

    async def _plan(
        self, batch_id: str, model: str, entries: list[Entry]
    ) -> tuple[list[tuple[int, Any, Item]], array]:
        """Every request's outcome, in finish order, with running counts of failures."""
        state = self.state
        item_fault = state.fault("gemini", "batches", model, ("batch_item_error",))
        items: list[tuple[int, Any, Item]] = []
        failed_prefix = array("I", [0])
        failed = 0
        for position, index in enumerate(finish_order(len(entries), batch_id), start=1):
            where, key, call = entries[index]
            if item_fault is not None and item_fault.rng.random() < item_fault.rate:
                call = ITEM_ERROR
            item: Item = call if isinstance(call, GoogleError) else plan_generate(state, call)
            if isinstance(item, GoogleError):
                failed += 1
            items.append((where, key, item))
            failed_prefix.append(failed)
            if position % PLAN_CHUNK == 0:
                await asyncio.sleep(0)
        return items, failed_prefix

    async def advance_all(self) -> None:
        for batch in list(self.state.gemini_batches.values()):
            if batch.output is None and batch.error is None:
                await self.advance(batch)

    async def advance(self, batch: GeminiBatch) -> Snapshot:
        """Catch a batch up with the sim clock: bill finished requests, gather results once
        it has ended."""
        snapshot = batch.timeline.at(self.state.clock.now())
        if snapshot.done > batch.billed:
            self._bill(batch, batch.billed, snapshot.done)
            batch.billed = snapshot.done
        if snapshot.ended and batch.output is None and batch.error is None:
            if batch.writing is None:
                batch.writing = asyncio.ensure_future(self._gather(batch, snapshot))
            await asyncio.shield(batch.writing)
        return snapshot

    def _bill(self, batch: GeminiBatch, start: int, end: int) -> None:
        input_tokens = cached = output = requests = 0
        for _, _, item in batch.items[start:end]:
            if isinstance(item, GeneratePlan):
                requests += 1
                input_tokens += item.prompt_tokens
                cached += item.cached_tokens
                output += item.completion_tokens
        if requests:
            self.state.usage.add(
                "gemini",
                batch.model,
                "batch",
                input_tokens=input_tokens,
                cached_input_tokens=cached,
                output_tokens=output,
                requests=requests,
            )

    async def _gather(self, batch: GeminiBatch, snapshot: Snapshot) -> None:
        state = self.state
        results: list[tuple[int, Any, dict[str, Any]]] = []
        for count, (where, key, item) in enumerate(batch.items[: snapshot.done], start=1):
            if count % WRITE_CHUNK == 0:
                await asyncio.sleep(0)
            if isinstance(item, GoogleError):
                result: dict[str, Any] = {"error": item.status_json()}
            else:
                result = {"response": response_json(item, state.ids.make(""))}
            results.append((where, key, result))
        if batch.input_file is None:
            results.sort(key=lambda found: found[0])
            inlined = [
                {**result, **({"metadata": key} if key is not None else {})}
                for _, key, result in results
            ]
            batch.output = {"inlinedResponses": {"inlinedResponses": inlined}}
            return
        lines = [
            dumps({**({"key": key} if key is not None else {}), **result})
            for _, key, result in results
        ]
        if state.gemini_batches.get(batch.id) is not batch:
            return  # reset or deleted meanwhile
        stored = store_file(
            state,
            GeminiFile(
                id=f"batch-{batch.id}",
                display_name=f"batch-{batch.id}-results",
                mime_type="application/jsonl",
                data=("\n".join(lines) + "\n").encode() if lines else b"",
                created=snapshot.ended_at or state.clock.now(),
                expires_at=None,
                source="GENERATED",
            ),
        )
        batch.output = {"responsesFile": stored.name}

    def _render(self, batch: GeminiBatch, snapshot: Snapshot) -> dict[str, Any]:
        timeline = batch.timeline
        done = snapshot.done
        failed = batch.failed_prefix[done] if batch.items else 0
        changed = snapshot.ended_at or snapshot.finalizing_at or snapshot.in_progress_at
        metadata: dict[str, Any] = {
            "@type": BATCH_TYPE,
            "model": f"models/{batch.model}",
            "createTime": rfc3339(timeline.created),
            "updateTime": rfc3339(changed or timeline.created),
            "batchStats": {
                "requestCount": str(timeline.items),
                "successfulRequestCount": str(done - failed),
                "failedRequestCount": str(failed),
                "pendingRequestCount": str(timeline.items - done),
            },
            "state": STATES[snapshot.phase],
            "name": batch.name,
        }
        if batch.display_name is not None:
            metadata["displayName"] = batch.display_name
        if batch.input_file is not None:
            metadata["inputConfig"] = {"fileName": batch.input_file}
        operation: dict[str, Any] = {"name": batch.name, "metadata": metadata}
        if snapshot.ended:
            metadata["endTime"] = rfc3339(snapshot.ended_at or timeline.created)
            operation["done"] = True
            if batch.error is not None:
                operation["error"] = batch.error.status_json()
            elif batch.output is not None:
                metadata["output"] = batch.output
                operation["response"] = {"@type": OUTPUT_TYPE, **batch.output}
        return operation

    async def retrieve(self, request: web.Request) -> web.Response:
        batch = self._batch(request.match_info["batch"])
        return google_json(self._render(batch, await self.advance(batch)))

    async def cancel(self, request: web.Request) -> web.Response:
        name, _, method = request.match_info["batch"].rpartition(":")
        if method != "cancel" or not name:
            raise GoogleError(404, f"Method not found: {method}.")
        batch = self._batch(name)
        snapshot = await self.advance(batch)
        if snapshot.phase not in (VALIDATING, IN_PROGRESS, FINALIZING):
            raise GoogleError(
                400,
                f"Batch {batch.name} is {STATES[snapshot.phase]}: only a pending or running "
                "batch can be cancelled.",
                "FAILED_PRECONDITION",
            )
        batch.timeline.cancel_at = self.state.clock.now()
        await self.advance(batch)
        return google_json({})

    async def delete(self, request: web.Request) -> web.Response:
        """Forget the batch (the real API forgets the operation without cancelling it; here
        nothing more of it runs or is billed)."""
        batch = self._batch(request.match_info["batch"])
        await self.advance(batch)
        del self.state.gemini_batches[batch.id]
        return google_json({})

    async def list_batches(self, request: web.Request) -> web.Response:
        raw = request.query.get("pageSize")
        try:
            size = int(raw) if raw is not None else 50
        except ValueError:
            raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), {raw!r}") from None
        size = min(size if size > 0 else 50, 1000)
        batches = list(reversed(self.state.gemini_batches.values()))
        page, token = page_after(batches, request.query.get("pageToken"), size)
        operations = [self._render(b, await self.advance(b)) for b in page]
        body: dict[str, Any] = {"operations": operations}
        if token:
            body["nextPageToken"] = token
        return google_json(body)
