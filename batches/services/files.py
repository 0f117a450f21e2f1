"""The OpenAI-compatible surface's storage: stored files (/v1/files) on disk, the jobs a
client's batch is built into, and its output and error files once it has ended."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone

from batches import jsonl
from batches.models import BatchItem, BatchJob, ClientBatch, ClientBatchLine, StoredFile
from batches.services.buffer import line_bytes
from batches.services.common import job_save
from batches.services.ingest import job_finish
from billing.pricing import Usage
from routing import asks
from routing.models import Request
from routing.protocols import openai_chat

FILE_RETENTION = timedelta(days=30)
COMPLETION_WINDOW = timedelta(hours=24)


class SurfaceError(Exception):
    """A refused call of /v1/files or /v1/batches: HTTP status, message, the param at fault."""

    def __init__(self, status: int, message: str, *, param: str = "", code: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def files_dir() -> Path:
    path = Path(settings.DATA_DIR) / "files"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_path(stored: StoredFile) -> Path:
    return files_dir() / f"{stored.id}.jsonl"


def file_store(
    *, team, filename: str, purpose: str, chunks, max_lines: int | None = None
) -> StoredFile:
    """Validate an uploaded batch input file as it streams to disk (never whole in memory);
    a bad file is refused naming its lines (SurfaceError 400) and nothing is kept. At most
    `max_lines` lines (LLMOPS_BATCH_FILE_MAX_LINES unless given)."""
    max_lines = max_lines or settings.LLMOPS_BATCH_FILE_MAX_LINES
    if purpose != StoredFile.Purpose.BATCH:
        raise SurfaceError(
            400,
            f"purpose must be 'batch' (llmops stores batch files only), got {purpose!r}",
            param="purpose",
        )
    file_id = StoredFile.new_id()
    path = files_dir() / f"{file_id}.jsonl"
    size = 0

    def tee():
        nonlocal size
        with path.open("wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > jsonl.OPENAI_MAX_BYTES:
                    raise SurfaceError(
                        413, f"the file is over {jsonl.OPENAI_MAX_BYTES} bytes", param="file"
                    )
                out.write(chunk)
                yield chunk

    try:
        scanned = jsonl.scan(tee())
        if scanned.lines > max_lines:
            raise SurfaceError(
                400,
                f"the file has {scanned.lines} lines; a batch file takes at most {max_lines}",
                param="file",
            )
    except jsonl.BatchFileError as exc:
        path.unlink(missing_ok=True)
        raise SurfaceError(400, f"Invalid batch file: {exc}", param="file") from None
    except SurfaceError:
        path.unlink(missing_ok=True)
        raise
    now = timezone.now()
    return StoredFile.objects.create(
        id=file_id,
        team=team,
        purpose=purpose,
        filename=(filename or "batch.jsonl")[:255],
        bytes=size,
        lines=scanned.lines,
        model=next(iter(scanned.models), ""),
        endpoint=next(iter(scanned.urls), jsonl.CHAT_ENDPOINT),
        created_at=now,
        expires_at=now + FILE_RETENTION,
    )


def file_chunks(stored: StoredFile, size: int = 1 << 16):
    with file_path(stored).open("rb") as source:
        while chunk := source.read(size):
            yield chunk


class ClientBatchJobs:
    """Puts a client's admitted lines into its batch's building jobs, opening a new job where
    the provider's limits end the last. One per admission slice: it remembers the open job's
    size between chunks instead of reading it back each time."""

    def __init__(self, batch: ClientBatch) -> None:
        self.batch = batch
        self.max_lines, self.max_bytes = batch.model.provider.batch_limits
        self.job = (
            BatchJob.objects.filter(client_batch=batch, status=BatchJob.Status.BUILDING)
            .order_by("-pk")
            .first()
        )
        # Resuming a job an earlier slice began: its size again, bounded as _chunks does.
        self.size = (
            sum(
                line_bytes(r)
                for r in Request.objects.filter(batch_items__job=self.job).only("params")
            )
            if self.job
            else 0
        )

    def prepare(self, requests: list[Request], *, now: datetime) -> list[BatchItem]:
        """The items of admitted `requests`, each in the open job or a new one where the
        provider's limits end it (new jobs are only built here; `add` saves them)."""
        batch = self.batch
        items: list[BatchItem] = []
        for request in requests:
            line_size = line_bytes(request)
            job = self.job
            if (
                job is None
                or job.item_count >= self.max_lines
                or (self.size + line_size > self.max_bytes)
            ):
                job = self.job = BatchJob(
                    team_id=batch.team_id,
                    provider=batch.model.provider,
                    model=batch.model,
                    lane=batch.workload.latency_class,
                    client_batch=batch,
                    status=BatchJob.Status.BUILDING,
                    reason=BatchJob.Reason.CLIENT,
                    earliest_deadline_at=request.deadline_at,
                    created_at=now,
                    next_check_at=now,
                )
                self.size = 0
            items.append(BatchItem(job=job, request=request))
            job.item_count += 1
            self.size += line_size
        return items

    def add(self, items: list[BatchItem]) -> None:
        """Save what `prepare` built, inside the transaction that admits its requests."""
        jobs: dict[int, BatchJob] = {}
        added: dict[int, int] = defaultdict(int)
        for item in items:
            jobs[id(item.job)] = item.job  # by identity: a job not saved yet has no pk
            added[id(item.job)] += 1
        for key, job in jobs.items():
            count = added[key]
            if job.pk is None:
                job.save(force_insert=True)  # item_count already counts its items
            else:
                BatchJob.objects.filter(pk=job.pk).update(item_count=F("item_count") + count)
        for item in items:
            item.job_id = item.job.pk
            item.custom_id = f"{item.job.custom_id_prefix}{item.request.pk.hex}"
        BatchItem.objects.bulk_create(items, batch_size=1000)


def client_batch_jobs_release(*, batch: ClientBatch, now: datetime) -> list[int]:
    """The batch is admitted whole: its jobs may be submitted. Returns their ids (the caller
    enqueues their first step after its transaction commits)."""
    jobs = list(
        BatchJob.objects.filter(client_batch=batch, status=BatchJob.Status.BUILDING).values_list(
            "pk", flat=True
        )
    )
    BatchJob.objects.filter(pk__in=jobs).update(
        status=BatchJob.Status.PENDING, created_at=now, next_check_at=now
    )
    return jobs


def client_batch_jobs_abandon(*, batch: ClientBatch, now: datetime) -> None:
    """The client cancelled while its file was being admitted: the jobs built so far never
    reached a provider, so their requests end cancelled and their holds go back, in bounded
    transactions (a crash between two resumes where it stopped)."""
    for job in BatchJob.objects.filter(client_batch=batch, status=BatchJob.Status.BUILDING):
        BatchJob.objects.filter(pk=job.pk).update(
            cancel_requested_at=now, cancel_reason=BatchJob.CancelReason.CLIENT
        )
        job.cancel_requested_at, job.cancel_reason = now, BatchJob.CancelReason.CLIENT
        job_save(job, provider_status="cancelled")
        pending = BatchItem.objects.filter(job=job, status=BatchItem.Status.PENDING)
        pending.update(status=BatchItem.Status.CANCELLED, ended_at=now)
        job_finish(job, now=now)


def client_batch_refresh(*, batch: ClientBatch) -> ClientBatch:
    """Bring the client's view up to date from its requests; once none is pending, write its
    output and error files (streamed to disk) and end it. Idempotent and race-safe: the end
    is a conditional UPDATE, and a loser deletes the files it wrote."""
    if batch.status in ClientBatch.ENDED or batch.status == ClientBatch.Status.VALIDATING:
        return batch
    statuses = dict(
        Request.objects.filter(batch_line__batch=batch)
        .values_list("status")
        .annotate(n=models.Count("pk"))
        .order_by()
    )
    completed = statuses.get(Request.Status.COMPLETED, 0)
    failed = statuses.get(Request.Status.FAILED, 0) + statuses.get(Request.Status.CANCELLED, 0)
    # Lines a cancel stopped before they were admitted never became requests.
    never_admitted = 0 if batch.in_progress_at else batch.total - batch.admitted
    fields = {"completed": completed, "failed": failed + never_admitted}
    unended = (
        BatchJob.objects.filter(client_batch=batch).exclude(status__in=BatchJob.TERMINAL).exists()
    )
    if (
        completed + failed + never_admitted < batch.total
        or unended
        or (not batch.in_progress_at and _admission_running(batch))
    ):
        ClientBatch.objects.filter(pk=batch.pk).update(**fields)
        for name, value in fields.items():
            setattr(batch, name, value)
        return batch
    now = timezone.now()
    output, errors = _write_results(batch)
    # A cancel that came after every line was answered leaves a completed batch.
    cancelled = batch.cancelling_at is not None and completed < batch.total
    final = ClientBatch.Status.CANCELLED if cancelled else ClientBatch.Status.COMPLETED
    fields.update(
        status=final,
        finalizing_at=now,
        output_file=output,
        error_file=errors,
        **({"cancelled_at": now} if cancelled else {"completed_at": now}),
    )
    won = (
        ClientBatch.objects.filter(pk=batch.pk)
        .exclude(status__in=ClientBatch.ENDED)
        .update(**fields)
    )
    if not won:
        for stored in (output, errors):
            if stored is not None:
                file_path(stored).unlink(missing_ok=True)
                stored.delete()
    batch.refresh_from_db()
    return batch


def _admission_running(batch: ClientBatch) -> bool:
    # A worker holds the batch (cancelled mid-admission, still tidying its building jobs).
    return bool(batch.lease_until and batch.lease_until > timezone.now())


def _write_results(batch: ClientBatch) -> tuple[StoredFile | None, StoredFile | None]:
    """OpenAI's output file (answered lines) and error file (the rest), in input order."""
    now = timezone.now()
    files = {}
    handles = {}

    def write(kind: str, record: dict) -> None:
        if kind not in handles:
            stored = StoredFile(
                id=StoredFile.new_id(),
                team=batch.team,
                purpose=StoredFile.Purpose.BATCH_OUTPUT,
                filename=f"{batch.id}_{kind}.jsonl",
                created_at=now,
                expires_at=now + FILE_RETENTION,
            )
            files[kind], handles[kind] = stored, file_path(stored).open("wb")
        encoded = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        handles[kind].write(encoded)
        files[kind].bytes += len(encoded)
        files[kind].lines += 1

    try:
        lines = (
            ClientBatchLine.objects.filter(batch=batch)
            .select_related("request__model")
            .order_by("line")
            .iterator(chunk_size=2000)
        )
        for line in lines:
            write(*_result_line(line))
        if not batch.in_progress_at and batch.admitted < batch.total:
            for number, custom_id in _input_custom_ids(batch.input_file, after=batch.admitted):
                write("error", _cancelled_line(f"batch_req_{batch.id}_{number}", custom_id))
    finally:
        for handle in handles.values():
            handle.close()
    for stored in files.values():
        stored.save(force_insert=True)
    return files.get("output"), files.get("error")


def _input_custom_ids(stored: StoredFile, *, after: int) -> Iterator[tuple[int, str]]:
    """(line number, custom_id) of the input file's lines past `after` (validated at upload)."""
    for number, raw in jsonl.raw_lines(file_chunks(stored)):
        if number > after:
            yield number, jsonl.parse_line(number, raw, endpoint=stored.endpoint).custom_id


CANCELLED_MESSAGE = "The batch was cancelled before this request ran."


def _cancelled_line(line_id: str, custom_id: str, message: str = CANCELLED_MESSAGE) -> dict:
    error = {"code": "batch_cancelled", "message": message}
    return {"id": line_id, "custom_id": custom_id, "response": None, "error": error}


def _result_line(line: ClientBatchLine) -> tuple[str, dict]:
    request = line.request
    ident = {"id": f"batch_req_{request.pk.hex}", "custom_id": line.custom_id}
    if request.status == Request.Status.COMPLETED and request.params.get("kind") in (
        "embeddings",
        "responses",
        "messages",
    ):
        # The answer whole: embeddings, Responses and Messages as the provider sent them (a
        # translated one as llmops rendered it), with their model and usage.
        response = {
            "status_code": 200,
            "request_id": f"req_{request.pk.hex}",
            "body": request.answer,
        }
        return "output", {**ident, "response": response, "error": None}
    if request.status == Request.Status.COMPLETED:
        body = openai_chat.response_body(
            asks.answer_of(request),
            usage=Usage(**request.usage),
            id=f"chatcmpl-{request.pk.hex}",
            created=int(request.completed_at.timestamp()),
            model=request.model.model_id,
        )
        response = {"status_code": 200, "request_id": f"req_{request.pk.hex}", "body": body}
        return "output", {**ident, "response": response, "error": None}
    if request.status == Request.Status.CANCELLED:
        message = request.error or CANCELLED_MESSAGE
        return "error", _cancelled_line(ident["id"], line.custom_id, message)
    error = {"code": "request_failed", "message": request.error or "The request failed."}
    return "error", {**ident, "response": None, "error": error}


def client_batch_cancelling(*, batch: ClientBatch) -> bool:
    """Mark a client's batch cancelling. False if it already ended or was being cancelled."""
    now = timezone.now()
    changed = (
        ClientBatch.objects.filter(pk=batch.pk, cancelling_at__isnull=True)
        .exclude(status__in=ClientBatch.ENDED)
        .update(status=ClientBatch.Status.CANCELLING, cancelling_at=now)
    )
    if changed:
        batch.status, batch.cancelling_at = ClientBatch.Status.CANCELLING, now
    return changed == 1
