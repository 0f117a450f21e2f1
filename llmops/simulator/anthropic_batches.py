"""Anthropic Message Batches.

Only the envelope is checked at create (custom_id pattern and uniqueness, count,
size); each request's params are checked as if the batch ran them, and a bad
one becomes an `errored` result. Counts stay `processing` until the batch ends.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llmops.simulator.anthropic_api import (
    AnthropicError,
    MessagePlan,
    MessagesRequest,
    bill_message,
    endpoint,
    invalid,
    json_response,
    list_query,
    message_json,
    parse_messages,
    plan_message,
    read_json,
)
from llmops.simulator.batches import (
    CANCELLING,
    EXPIRED,
    FINALIZING,
    IN_PROGRESS,
    VALIDATING,
    Snapshot,
    Timeline,
    expire_after_items,
    finish_order,
)
from llmops.simulator.state import Fault, SimState
from llmops.simulator.wire import dumps, page_window, rfc3339

MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1024 * 1024
# Big batches are planned and written in chunks, yielding to the event loop
# between them, so realtime traffic keeps flowing meanwhile.
PLAN_CHUNK = 2_000
WRITE_CHUNK = 1_000
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ITEM_SERVER_ERROR = AnthropicError(500, "Internal server error", type="api_error")


def _check_envelope(requests: Any) -> list[dict[str, Any]]:
    """The create-time checks; params wait until the batch "runs" them."""
    if requests is None:
        raise invalid("requests: Field required")
    if not isinstance(requests, list):
        raise invalid("requests: Input should be a valid list")
    if not 1 <= len(requests) <= MAX_REQUESTS:
        raise invalid(
            f"requests: List should have between 1 and {MAX_REQUESTS} items, not {len(requests)}"
        )
    seen: set[str] = set()
    for index, entry in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(entry, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        custom_id = entry.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise invalid(f"{where}.custom_id: String should match pattern '{CUSTOM_ID.pattern}'")
        if custom_id in seen:
            raise invalid(f"{where}.custom_id: duplicate custom_id {custom_id!r} in this batch")
        seen.add(custom_id)
        if not isinstance(entry.get("params"), dict):
            raise invalid(f"{where}.params: Input should be a valid dictionary")
    return requests


@dataclass(slots=True)
class MessageBatch:
    id: str
    timeline: Timeline
    # In finish order: (custom_id, plan) or (custom_id, the error it ends with).
    items: list[tuple[str, MessagePlan | AnthropicError]]
    billed: int = 0
    results: bytes | None = None
    counts: dict[str, int] | None = None
    writing: asyncio.Future[None] | None = None


class AnthropicBatches:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        s = self.state
        base = "/anthropic/v1/messages/batches"
        return [
            web.post(base, endpoint(s, "batches", self.create)),
            web.get(base, endpoint(s, "batches", self.list_batches)),
            web.get(f"{base}/{{batch_id}}", endpoint(s, "batches", self.retrieve)),
            web.delete(f"{base}/{{batch_id}}", endpoint(s, "batches", self.delete)),
            web.post(f"{base}/{{batch_id}}/cancel", endpoint(s, "batches", self.cancel)),
            web.get(f"{base}/{{batch_id}}/results", endpoint(s, "batches", self.results)),
        ]

    def _batch(self, batch_id: str) -> MessageBatch:
        found = self.state.anthropic_batches.get(batch_id)
        if found is None:
            raise AnthropicError(404, f"batch_id: {batch_id} not found", type="not_found_error")
        return found

    async def create(self, request: web.Request, rid: str) -> web.Response:
        state = self.state
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise AnthropicError(
                413, "Request exceeds the maximum size of 256 MB.", type="request_too_large"
            )
        body = read_json(await request.read())
        requests = _check_envelope(body.get("requests"))
        models = state.config.models["anthropic"]
        parsed: list[tuple[str, MessagesRequest | AnthropicError]] = []
        for entry in requests:
            try:
                line: MessagesRequest | AnthropicError = parse_messages(
                    entry["params"], models, in_batch=True
                )
            except AnthropicError as exc:
                line = exc
            parsed.append((entry["custom_id"], line))
        del requests, body
        batch_models = tuple(
            sorted({line.model for _, line in parsed if isinstance(line, MessagesRequest)})
        )

        batch_id = state.ids.make("msgbatch_")
        first = parsed[0][1]
        settings = state.config.for_model(
            first.model if isinstance(first, MessagesRequest) else None
        )
        count = len(parsed)
        timeline = Timeline(
            created=state.clock.now(),
            items=count,
            validating_s=settings.validating_s,
            turnaround_s=settings.turnaround_s,
            finalizing_s=settings.finalizing_s,
            cancel_s=settings.cancel_s,
        )
        faults = self._batch_faults(batch_models)
        if "batch_expire" in faults:
            timeline.expire_after = expire_after_items(count, faults["batch_expire"].after_fraction)
        items = await self._plan_items(batch_id, parsed, faults)
        batch = MessageBatch(id=batch_id, timeline=timeline, items=items)
        state.anthropic_batches[batch_id] = batch
        return json_response(self._render(request, batch, await self.advance(batch)), rid)

    def _batch_faults(self, models: tuple[str, ...]) -> dict[str, Fault]:
        state = self.state
        faults: dict[str, Fault] = {}
        if state.faults.faults:
            for kind in ("batch_fail", "batch_expire", "batch_item_error"):
                fault = state.faults.match(
                    "anthropic", "batches", models, (kind,), state.clock.now()
                )
                if fault is not None:
                    faults[kind] = fault
        return faults

    async def _plan_items(
        self,
        batch_id: str,
        parsed: list[tuple[str, MessagesRequest | AnthropicError]],
        faults: dict[str, Fault],
    ) -> list[tuple[str, MessagePlan | AnthropicError]]:
        """Every request's outcome, in finish order."""
        failing = faults.get("batch_fail")
        item_fault = faults.get("batch_item_error")
        items: list[tuple[str, MessagePlan | AnthropicError]] = []
        for position, index in enumerate(finish_order(len(parsed), batch_id), start=1):
            custom_id, line = parsed[index]
            if isinstance(line, MessagesRequest) and (
                failing is not None
                or (
                    item_fault is not None
                    and item_fault.model in ("*", line.model)
                    and item_fault.rng.random() < item_fault.rate
                )
            ):
                line = ITEM_SERVER_ERROR
            if isinstance(line, MessagesRequest):
                items.append((custom_id, plan_message(self.state, line)))
            else:
                items.append((custom_id, line))
            if position % PLAN_CHUNK == 0:
                await asyncio.sleep(0)
        return items

    async def retrieve(self, request: web.Request, rid: str) -> web.Response:
        batch = self._batch(request.match_info["batch_id"])
        return json_response(self._render(request, batch, await self.advance(batch)), rid)

    async def cancel(self, request: web.Request, rid: str) -> web.Response:
        batch = self._batch(request.match_info["batch_id"])
        snapshot = await self.advance(batch)
        if snapshot.phase in (VALIDATING, IN_PROGRESS, FINALIZING):
            batch.timeline.cancel_at = self.state.clock.now()
            snapshot = await self.advance(batch)
            return json_response(self._render(request, batch, snapshot, as_canceling=True), rid)
        if snapshot.phase == CANCELLING:
            return json_response(self._render(request, batch, snapshot), rid)
        raise invalid(f"Batch {batch.id} has already ended and cannot be canceled.")

    async def delete(self, request: web.Request, rid: str) -> web.Response:
        batch = self._batch(request.match_info["batch_id"])
        if not (await self.advance(batch)).ended:
            # 400, not 409: the SDK retries 409.
            raise invalid(
                f"Batch {batch.id} cannot be deleted while it is still processing; "
                "cancel it and wait for it to end first."
            )
        del self.state.anthropic_batches[batch.id]
        return json_response({"id": batch.id, "type": "message_batch_deleted"}, rid)

    async def list_batches(self, request: web.Request, rid: str) -> web.Response:
        after, before, limit = list_query(request.query)
        ids = list(reversed(self.state.anthropic_batches))
        start, end, has_more = page_window(ids, after, before, limit)
        data = []
        for batch_id in ids[start:end]:
            batch = self.state.anthropic_batches[batch_id]
            data.append(self._render(request, batch, await self.advance(batch)))
        return json_response(
            {
                "data": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            },
            rid,
        )

    async def results(self, request: web.Request, rid: str) -> web.Response:
        batch = self._batch(request.match_info["batch_id"])
        await self.advance(batch)
        if batch.results is None:
            raise invalid(f"Batch {batch.id} has not ended yet; results are not available.")
        return web.Response(
            body=batch.results,
            content_type="application/binary",
            headers={"request-id": rid},
        )

    async def advance_all(self) -> None:
        for batch in list(self.state.anthropic_batches.values()):
            if batch.results is None:
                await self.advance(batch)

    async def advance(self, batch: MessageBatch) -> Snapshot:
        """Catch a batch up with the sim clock: bill finished items, write results once ended."""
        snapshot = batch.timeline.at(self.state.clock.now())
        if snapshot.done > batch.billed:
            for _, item in batch.items[batch.billed : snapshot.done]:
                if isinstance(item, MessagePlan):
                    bill_message(self.state, item, "batch")
            batch.billed = snapshot.done
        if snapshot.ended and batch.results is None:
            # Shared, so concurrent readers wait for the one writer.
            if batch.writing is None:
                batch.writing = asyncio.ensure_future(self._write_results(batch, snapshot))
            await asyncio.shield(batch.writing)
        return snapshot

    async def _write_results(self, batch: MessageBatch, snapshot: Snapshot) -> None:
        ids = self.state.ids
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        lines: list[str] = []
        for position, (custom_id, item) in enumerate(batch.items[: snapshot.done], start=1):
            if isinstance(item, MessagePlan):
                counts["succeeded"] += 1
                result = {"type": "succeeded", "message": message_json(ids.make("msg_"), item)}
            else:
                counts["errored"] += 1
                result = {"type": "errored", "error": {"type": "error", "error": item.error()}}
            lines.append(dumps({"custom_id": custom_id, "result": result}))
            if position % WRITE_CHUNK == 0:
                await asyncio.sleep(0)
        unfinished = "expired" if snapshot.phase == EXPIRED else "canceled"
        rest = '{"type":"%s"}' % unfinished  # noqa: UP031
        for custom_id, _ in batch.items[snapshot.done :]:
            counts[unfinished] += 1
            lines.append(f'{{"custom_id":{dumps(custom_id)},"result":{rest}}}')
        batch.counts = counts
        batch.results = ("\n".join(lines) + "\n").encode()

    def _render(
        self,
        request: web.Request,
        batch: MessageBatch,
        snapshot: Snapshot,
        *,
        as_canceling: bool = False,
    ) -> dict[str, Any]:
        timeline = batch.timeline
        ended = snapshot.ended and not as_canceling
        if ended:
            status = "ended"
        elif snapshot.phase == CANCELLING or as_canceling:
            status = "canceling"
        else:
            status = "in_progress"
        if ended and batch.counts is not None:
            counts = batch.counts
        else:
            counts = {
                "processing": timeline.items,
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            }
        cancelling_at = snapshot.cancelling_at
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": rfc3339(timeline.created),
            "expires_at": rfc3339(timeline.expires_at),
            "ended_at": rfc3339(snapshot.ended_at) if ended and snapshot.ended_at else None,
            "cancel_initiated_at": rfc3339(cancelling_at) if cancelling_at is not None else None,
            "archived_at": None,
            # The SDK GETs this verbatim, so it must point back at this server as the
            # client reached it (the Host header), never at api.anthropic.com.
            "results_url": (
                f"{request.scheme}://{request.host}/anthropic/v1/messages/batches/{batch.id}/results"
                if ended
                else None
            ),
        }
