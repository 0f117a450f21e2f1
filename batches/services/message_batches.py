"""Anthropic's Message Batches (/v1/messages/batches) on llmops' own batch machinery: a
create's requests become a stored JSONL file of /v1/messages lines and a client batch like
any /v1/batches one (checked and admitted by a worker, answered by provider batches at the
batch price, cancelled with what finished kept and billed once), so an Anthropic-format batch
runs on an OpenAI model as well as on Claude. This module keeps Anthropic's view of it: the
batch object, its counts and its results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

from django.db import models

from batches import jsonl
from batches.models import ClientBatch, ClientBatchLine
from batches.services.client_batches import client_batch_create
from batches.services.files import SurfaceError, file_chunks, file_store
from routing.models import ApiKey, Request, Workload

# Anthropic's limit is 100,000 requests or 256 MB, whichever comes first.
MAX_REQUESTS = 100_000
ID_PREFIX = "msgbatch_"
ID_LENGTH = ClientBatch._meta.get_field("id").max_length


def _refused(message: str) -> SurfaceError:
    return SurfaceError(400, message, param="requests")


def message_batch_create(
    *, api_key: ApiKey | None, workload: Workload, requests, metadata: dict | None = None
) -> ClientBatch:
    """Check the envelope as Anthropic does at create (each request's `params` are checked
    by the worker, as Anthropic checks them after the create), store the requests as a file of
    /v1/messages lines and accept the batch. Raises SurfaceError (400) naming the request at
    fault, RequestRejected when the workload cannot batch."""
    if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_REQUESTS:
        raise _refused(f"requests: a list of 1 to {MAX_REQUESTS} requests")
    seen: set[str] = set()
    model = None
    for index, item in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(item, dict):
            raise _refused(f"{where}: Input should be a valid dictionary")
        custom_id, params = item.get("custom_id"), item.get("params")
        if not isinstance(custom_id, str) or not jsonl.CUSTOM_ID.fullmatch(custom_id):
            raise _refused(f"{where}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
        if custom_id in seen:
            raise _refused(f"{where}.custom_id: {custom_id!r} is not unique within the batch")
        seen.add(custom_id)
        if not isinstance(params, dict):
            raise _refused(f"{where}.params: Input should be a valid dictionary")
        if params.get("stream"):
            raise _refused(f"{where}.params.stream: streaming is not supported in a batch")
        if not isinstance(params.get("model"), str) or not params["model"]:
            raise _refused(f"{where}.params.model: Field required")
        model = model or params["model"]
        if params["model"] != model:
            # Providers take one model per batch; llmops keeps a client batch on one.
            raise _refused(
                f"{where}.params.model: {params['model']!r} differs from {model!r}: llmops runs "
                "a message batch on one model (send one batch per model)"
            )
    lines = (
        jsonl.request_line(
            custom_id=item["custom_id"], body=item["params"], endpoint=jsonl.MESSAGES_ENDPOINT
        )
        for item in requests
    )
    stored = file_store(
        team=workload.team,
        filename="message_batch.jsonl",
        purpose="batch",
        chunks=lines,
        max_lines=MAX_REQUESTS,
    )
    return client_batch_create(
        api_key=api_key,
        workload=workload,
        input_file=stored,
        metadata=metadata or {},
        # Within the id column (PostgreSQL refuses a longer one; SQLite would not say).
        id=f"{ID_PREFIX}{stored.id.removeprefix('file-')}"[:ID_LENGTH],
    )


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


_ENDED_AT = ("completed_at", "cancelled_at", "failed_at", "expired_at")


def message_batches_json(batches: list[ClientBatch], *, results_url) -> list[dict]:
    """Client batches as Anthropic's MessageBatch objects (`results_url(batch)` says where each
    one's results are): `in_progress` (`canceling` once cancelled) until every request has
    ended, then `ended`. Requests count as processing until the whole batch ends, and then by
    how each ended, as Anthropic counts them: one query for a page of batches."""
    ended = [b.pk for b in batches if b.status in ClientBatch.ENDED]
    statuses: dict[str, dict] = {}
    for batch_id, status, n in (
        Request.objects.filter(batch_line__batch__in=ended)
        .values_list("batch_line__batch", "status")
        .annotate(n=models.Count("pk"))
        .order_by()
    ):
        statuses.setdefault(batch_id, {})[status] = n
    return [_batch_json(b, statuses.get(b.pk, {}), results_url(b)) for b in batches]


def _batch_json(batch: ClientBatch, statuses: dict, results_url: str) -> dict:
    ended = batch.status in ClientBatch.ENDED
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    total = batch.input_file.lines  # a failed client batch counts none (OpenAI's way)
    if not ended:
        counts["processing"] = total
    elif batch.status == ClientBatch.Status.FAILED:
        counts["errored"] = total  # refused as a whole: each request errored
    else:
        counts["succeeded"] = statuses.get(Request.Status.COMPLETED, 0)
        counts["errored"] = statuses.get(Request.Status.FAILED, 0)
        # Cancelled requests, and lines a cancel stopped before they became requests.
        counts["canceled"] = total - counts["succeeded"] - counts["errored"]
    ended_at = next((getattr(batch, f) for f in _ENDED_AT if getattr(batch, f)), None)
    status = "ended" if ended else ("canceling" if batch.cancelling_at else "in_progress")
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "created_at": _rfc3339(batch.created_at),
        "expires_at": _rfc3339(batch.expires_at),
        "ended_at": _rfc3339(ended_at) if ended else None,
        "cancel_initiated_at": _rfc3339(batch.cancelling_at),
        "archived_at": None,
        "results_url": results_url if ended else None,
    }


def message_batch_results(batch: ClientBatch) -> Iterator[bytes]:
    """An ended batch's results as Anthropic's JSONL (one line per request, in the order
    sent, no blank lines), streamed: the file's custom_ids walked beside the batch's lines."""
    refused = _refusals(batch) if batch.status == ClientBatch.Status.FAILED else None
    rows = iter(
        ClientBatchLine.objects.filter(batch=batch)
        .select_related("request")
        .order_by("line")
        .iterator(chunk_size=1000)
    )
    row = next(rows, None)
    for number, raw in jsonl.raw_lines(file_chunks(batch.input_file)):
        custom_id = json.loads(raw)["custom_id"]
        if refused is not None:
            result = _errored(refused.get(number) or refused[0], "invalid_request_error")
        elif row is not None and row.line == number:
            result = _result(row.request)
            row = next(rows, None)
        else:  # never admitted: a cancel came first
            result = {"type": "canceled"}
        yield json.dumps({"custom_id": custom_id, "result": result}).encode() + b"\n"


def _refusals(batch: ClientBatch) -> dict:
    """Why each line of a batch refused as a whole failed: {line: message}, and under 0 the
    reason every other line shares."""
    errors = batch.errors or []
    first = errors[0]["message"] if errors else "The batch was refused."
    reasons = {e["line"]: e["message"] for e in errors if e.get("line")}
    return {0: f"The batch was refused ({first})", **reasons}


def _errored(message: str, kind: str) -> dict:
    return {
        "type": "errored",
        "error": {"type": "error", "error": {"type": kind, "message": message}},
    }


def _result(request: Request) -> dict:
    if request.status == Request.Status.COMPLETED:
        return {"type": "succeeded", "message": request.answer}
    if request.status == Request.Status.CANCELLED:
        return {"type": "canceled"}
    return _errored(request.error or "The request failed.", "api_error")
