"""A client's own batch (the OpenAI-compatible /v1/batches): accepted at once, admitted by a
worker, cancelled as OpenAI cancels.

OpenAI answers `batches.create` with a batch in `validating` and checks the file afterwards;
so does llmops. A 50,000-line file admitted inside the create call held SQLite's one write
lock for two minutes and took the realtime API down with it. Instead a worker admits it in
two passes over the stored file, both streamed, resumable and cut into slices that fit the
task timeout:

1. every line is checked as /v1/chat/completions would check it, and its worst case summed
   (the first 20 problems fail the batch, each naming its line, as OpenAI's `errors` do);
2. one reservation for the whole file is taken (all or nothing: a hard budget that cannot
   cover every line fails the batch), then the lines are admitted in chunks of
   LLMOPS_BATCH_ADMIT_CHUNK per transaction (set-based inserts: requests, their holds carved
   out of the file's reservation, the client's lines, the jobs' items), with a pause between
   chunks so realtime requests get the lock.

The lines go straight into jobs of their own (`building` until the last line is in), never
into the shared buffer: a cancel then cancels exactly the provider batches that hold them.

Cancelling (`client_batch_cancel`) marks the batch `cancelling` and cancels its provider
batches at once; lines the provider finished first are ingested, billed once against their
holds and returned in the output file, the rest end cancelled in the error file, and every
hold stays until the provider has confirmed and the last results are in.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from batches import jsonl
from batches.models import BatchJob, ClientBatch, ClientBatchLine, StoredFile
from batches.services.common import WriteGaps, enqueue
from batches.services.files import (
    COMPLETION_WINDOW,
    ClientBatchJobs,
    client_batch_cancelling,
    client_batch_jobs_abandon,
    client_batch_jobs_release,
    client_batch_refresh,
    file_chunks,
)
from batches.services.recovery import batch_cancel, request_cancel
from batches.services.rules import BATCH_HOLD_GRACE
from billing.models import Hold
from billing.pricing import PricingError, plain, request_prompt_bound
from billing.services import (
    BudgetExceeded,
    budget_reserve,
    hold_release,
    hold_split,
    reservation_amount,
)
from llmops.memory import release_free_memory
from routing.asks import (
    Ask,
    ChatCompletionInputSerializer,
    EmbeddingsInputSerializer,
    RequestRejected,
    ResponsesInputSerializer,
    ask_body,
    ask_params,
    embeddings_ask,
    first_error,
    openai_ask,
    openai_model,
    refused_param,
    responses_ask,
)
from routing.config import policy_chain
from routing.message_asks import MessagesInputSerializer, messages_ask
from routing.models import KIND_OF_ENDPOINT, ApiKey, LlmModel, Mode, Request, Workload
from routing.response_cache import prompt_fingerprint

log = logging.getLogger(__name__)

# A slice of admission ends after this long (the task timeout is 60 s) and the next goes on.
SLICE_SECONDS = 40
# Whoever holds an unexpired lease admits the batch; a dead worker's lease lapses.
LEASE = timedelta(minutes=3)
# The validation pass saves its progress (and looks for a cancel) this often, in lines.
CHECK_EVERY = 1000


def batch_models(workload: Workload) -> list[LlmModel]:
    """The batch-capable models of the workload's chain, in the policy's order."""
    return [
        m
        for m in policy_chain(workload.policy_id)
        if m.enabled and m.provider.enabled and m.batchable
    ]


def batch_model(workload: Workload, name: str, endpoint: str = jsonl.CHAT_ENDPOINT) -> LlmModel:
    """The model a batch file's lines are answered by: the one they name, as on
    /v1/chat/completions (an alias or the policy's primary is the chain's first model that can
    batch; another model is that model), settled once for the file since providers take one
    model per batch. Raises RequestRejected: 404 model_not_found, 400 model_not_allowed, or
    400 when the model (or the whole chain) cannot batch."""
    usable = batch_models(workload)
    named, pinned = openai_model(workload, name, kind=KIND_OF_ENDPOINT[endpoint])
    if not pinned:  # an alias, or the primary: the chain decides
        if not usable:
            raise RequestRejected(
                400,
                f"Workload {workload.slug}'s model chain has no batch-capable provider.",
                field="X-Workload",
                code="no_batch_model",
            )
        return usable[0]
    if not (named.enabled and named.provider.enabled and named.batchable):
        raise RequestRejected(
            400,
            f"Model {named.model_id!r} cannot take a batch (its provider "
            f"{named.provider.name} has batches off or none of its kind, or it is disabled)"
            + (f"; {usable[0].model_id} can." if usable else "."),
            field="model",
            code="no_batch_model",
        )
    return named


def client_batch_create(
    *,
    api_key: ApiKey | None,
    workload: Workload,
    input_file: StoredFile,
    metadata: dict,
    id: str | None = None,
) -> ClientBatch:
    """Accept a client's batch: recorded as `validating` and handed to a worker, which checks
    and admits its lines (`client_batch_admit`). Raises RequestRejected when the workload
    cannot batch at all; everything that needs reading the file is the worker's."""
    model = batch_model(workload, input_file.model, input_file.endpoint)
    now = timezone.now()
    batch = ClientBatch.objects.create(
        id=id or ClientBatch.new_id(),
        team=workload.team,
        api_key=api_key,
        workload=workload,
        model=model,
        input_file=input_file,
        endpoint=input_file.endpoint,
        metadata=metadata or {},
        status=ClientBatch.Status.VALIDATING,
        total=input_file.lines,
        created_at=now,
        expires_at=now + COMPLETION_WINDOW,
    )
    enqueue("batches.tasks.admit_client_batch", batch.pk)
    return batch


@dataclass
class AdmitStep:
    status: str  # the client batch's status after this slice ("" if another worker has it)
    more: bool = False  # run again: the slice ended before the admission did
    jobs: list[int] = field(default_factory=list)  # jobs released for submission


class _Stop(Exception):
    """The batch was cancelled, or this worker lost its lease: stop here."""


def client_batch_admit(*, batch_id: str) -> AdmitStep:
    """Run the admission's next slice: check lines, reserve, admit lines, release the jobs, or,
    for a batch cancelled meanwhile, abandon what was built. Safe to call any time from
    anywhere: the lease lets one caller in, and every step resumes where the last stopped."""
    now = timezone.now()
    token = secrets.token_hex(8)
    claimed = (
        ClientBatch.objects.filter(
            pk=batch_id,
            status__in=[ClientBatch.Status.VALIDATING, ClientBatch.Status.CANCELLING],
            in_progress_at__isnull=True,
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_token=token, lease_until=now + LEASE)
    )
    if not claimed:
        return AdmitStep(status="")
    batch = ClientBatch.objects.select_related(
        "team", "api_key", "workload__policy", "input_file", "model__provider"
    ).get(pk=batch_id)
    step = AdmitStep(status=batch.status)
    try:
        if batch.cancelling_at is None:
            _admit(batch, token=token, step=step, deadline=time.monotonic() + SLICE_SECONDS)
        if batch.cancelling_at is not None:
            _abandon(batch, now=now)
    except _Stop:
        step.more = True  # cancelled meanwhile: the next slice tidies up
    finally:
        ClientBatch.objects.filter(pk=batch_id, lease_token=token).update(
            lease_token="", lease_until=None
        )
        release_free_memory()  # a worker admits files of any size, one slice at a time
    if batch.cancelling_at is not None:
        client_batch_refresh(batch=batch)
    batch.refresh_from_db(fields=["status"])
    step.status = batch.status
    return step


def _admit(batch: ClientBatch, *, token: str, step: AdmitStep, deadline: float) -> None:
    if batch.validated < batch.total and not _validate(batch, token=token, deadline=deadline):
        step.more = True
        return
    if batch.status == ClientBatch.Status.FAILED:
        return
    hold = _file_hold(batch, token=token)
    if hold is None:
        return  # refused: the batch failed, naming the budget
    jobs = ClientBatchJobs(batch)
    gaps = WriteGaps()
    chunk: list[tuple[Ask, Decimal]] = []
    for number, ask in _asks(batch, after=batch.admitted):
        chunk.append((ask, _worst_case(batch, ask)))
        if len(chunk) >= settings.LLMOPS_BATCH_ADMIT_CHUNK or number == batch.total:
            _admit_chunk(batch, chunk, hold=hold, jobs=jobs, token=token, gaps=gaps)
            chunk = []
            if time.monotonic() > deadline and number < batch.total:
                step.more = True
                return
    if chunk:
        _admit_chunk(batch, chunk, hold=hold, jobs=jobs, token=token, gaps=gaps)
    now = timezone.now()
    with gaps.kept(), transaction.atomic():
        won = ClientBatch.objects.filter(
            pk=batch.pk,
            lease_token=token,
            status=ClientBatch.Status.VALIDATING,
            cancelling_at__isnull=True,
        ).update(status=ClientBatch.Status.IN_PROGRESS, in_progress_at=now)
        if not won:
            raise _Stop
        hold.refresh_from_db()
        hold_release(hold=hold)  # what the lines did not take: nothing, unless prices moved
        step.jobs = client_batch_jobs_release(batch=batch, now=now)
        for job_id in step.jobs:
            enqueue("batches.tasks.advance", job_id)
    batch.status, batch.in_progress_at = ClientBatch.Status.IN_PROGRESS, now


def _lines(stored: StoredFile, *, after: int) -> Iterator[jsonl.BatchLine]:
    """The file's lines past line `after`, streamed (checked at upload: they parse)."""
    for number, raw in jsonl.raw_lines(file_chunks(stored)):
        if number > after:
            yield jsonl.parse_line(number, raw, endpoint=stored.endpoint)


# One serializer per endpoint validates every line: DRF deep-copies a serializer's fields for
# each new instance, three quarters of the cost of checking a line.
_CHECK = {
    jsonl.CHAT_ENDPOINT: (ChatCompletionInputSerializer(), openai_ask),
    jsonl.EMBEDDINGS_ENDPOINT: (EmbeddingsInputSerializer(), embeddings_ask),
    jsonl.RESPONSES_ENDPOINT: (ResponsesInputSerializer(), responses_ask),
    jsonl.MESSAGES_ENDPOINT: (MessagesInputSerializer(), messages_ask),
}


def _line_ask(batch: ClientBatch, line: jsonl.BatchLine) -> Ask | dict:
    """The line as an Ask, or OpenAI's error record naming the line."""
    check, make_ask = _CHECK[batch.endpoint]
    try:
        data = check.run_validation(line.body)
    except ValidationError as exc:
        param, message = first_error(exc.detail)
        return _line_error(line.number, f"body.{param}: {message}", param=f"body.{param}")
    # The file's model was settled for the whole batch (one model per file, as providers
    # require): each line is that model's.
    ask = make_ask(
        batch.workload,
        {**data, "model": batch.model.model_id},
        source=Request.Source.BATCH_API,
        metadata={"custom_id": line.custom_id},
    )
    params = {"messages": ask.messages, "options": ask.options, "kind": ask.kind}
    if (
        not batch.model.provider.has_responses_api
        and ask.kind == "responses"
        and ask.options.get("previous_response_id")
    ):
        # A continuation on Claude needs the conversation llmops keeps, which a batch line
        # does not carry: send the whole conversation as `input` instead.
        return _line_error(
            line.number,
            f"body.previous_response_id: a batch on {batch.model.model_id} cannot continue a "
            "conversation; send the earlier turns in `input`",
            param="body.previous_response_id",
            code="unsupported_parameter",
        )
    if param := refused_param(batch.model, params):
        return _line_error(
            line.number,
            f"body.{param}: cannot be honoured by {batch.model.model_id} "
            f"({batch.model.provider.kind} protocol)",
            param=f"body.{param}",
            code="unsupported_parameter",
        )
    limit = batch.model.max_output_tokens
    if ask.max_tokens is not None and ask.max_tokens > limit:
        return _line_error(
            line.number,
            f"body.max_tokens: {ask.max_tokens} is above {batch.model.model_id}'s limit of {limit}",
            param="body.max_tokens",
        )
    return ask


def _line_error(line: int | None, message: str, *, param: str | None = None, code: str = ""):
    prefix = f"line {line}: " if line else ""
    return {
        "code": code or "invalid_request",
        "message": f"{prefix}{message}",
        "param": param,
        "line": line,
    }


def _asks(batch: ClientBatch, *, after: int) -> Iterator[tuple[int, Ask]]:
    for line in _lines(batch.input_file, after=after):
        ask = _line_ask(batch, line)
        if isinstance(ask, dict):  # the file changed under us (it cannot): refuse loudly
            raise RuntimeError(f"{batch.pk}: a validated line no longer validates: {ask}")
        yield line.number, ask


def _max_tokens(batch: ClientBatch, ask: Ask) -> int:
    return ask.max_tokens or batch.model.max_output_tokens


def _worst_case(batch: ClientBatch, ask: Ask) -> Decimal:
    """A line's reservation at the batch price. Priced as at the batch's creation, so that the
    two passes agree to the picodollar on what the whole file reserved."""
    return reservation_amount(
        model=batch.model,
        mode=Mode.BATCH,
        prompt_tokens=request_prompt_bound(
            {"messages": ask.messages, "options": ask.options, "kind": ask.kind}
        ),
        max_output_tokens=_max_tokens(batch, ask) * ask.n,
        at=batch.created_at,
    )


def _validate(batch: ClientBatch, *, token: str, deadline: float) -> bool:
    """The first pass: check every line and sum the worst cases, saving progress as it goes.
    False if the slice ended first. A batch with problems ends `failed` here."""
    if batch.model is None:
        usable = batch_models(batch.workload)
        if not usable:
            _fail(batch, token, [_line_error(None, "no batch-capable model", code="no_model")])
            return True
        # A batch created before its model was settled at creation (the old rule).
        named = next((m for m in usable if m.model_id == batch.input_file.model), None)
        batch.model = named or usable[0]
        _progress(batch, token, model=batch.model)
    errors = list(batch.errors or [])
    reservation = batch.reservation_usd
    checked = batch.validated
    try:
        for line in _lines(batch.input_file, after=checked):
            ask = _line_ask(batch, line)
            if isinstance(ask, dict):
                errors.append(ask)
            else:
                reservation += _worst_case(batch, ask)
            checked = line.number
            if len(errors) >= jsonl.MAX_REPORTED_ERRORS:
                break
            if checked % CHECK_EVERY == 0:
                # The problems found so far are saved with the counter: a worker resuming
                # from here must not forget them.
                _progress(
                    batch,
                    token,
                    validated=checked,
                    reservation_usd=reservation,
                    errors=errors or None,
                )
                if time.monotonic() > deadline:
                    batch.validated, batch.reservation_usd, batch.errors = (
                        checked,
                        reservation,
                        errors or None,
                    )
                    return False
    except PricingError as exc:
        errors.append(_line_error(None, str(exc), code="unpriced_model"))
    if errors:
        _fail(batch, token, errors)
        return True
    batch.validated, batch.reservation_usd = batch.total, reservation
    _progress(batch, token, validated=batch.total, reservation_usd=reservation)
    return True


def _progress(batch: ClientBatch, token: str, **fields) -> None:
    """Save admission progress, unless the batch was cancelled or the lease lost meanwhile."""
    saved = ClientBatch.objects.filter(
        pk=batch.pk, lease_token=token, cancelling_at__isnull=True
    ).update(lease_until=timezone.now() + LEASE, **fields)
    if saved != 1:
        raise _Stop


def _fail(batch: ClientBatch, token: str, errors: list[dict]) -> None:
    """End the batch `failed` with OpenAI's `errors` (nothing was admitted yet)."""
    now = timezone.now()
    saved = ClientBatch.objects.filter(
        pk=batch.pk,
        lease_token=token,
        status=ClientBatch.Status.VALIDATING,
        cancelling_at__isnull=True,
    ).update(status=ClientBatch.Status.FAILED, failed_at=now, errors=errors[:20], total=0)
    if saved != 1:
        raise _Stop
    batch.status = ClientBatch.Status.FAILED
    log.info("client batch %s refused: %s", batch.pk, errors[0]["message"])


def _file_hold(batch: ClientBatch, *, token: str) -> Hold | None:
    """One reservation for the whole file, taken once (a resumed admission finds it by key).
    None if a budget refused it: the batch then failed, naming it."""
    key = f"clientbatch:{batch.pk}"
    if (hold := Hold.objects.filter(key=key).first()) is not None:
        return hold
    ttl = COMPLETION_WINDOW + BATCH_HOLD_GRACE
    try:
        return budget_reserve(
            key=key,
            team=batch.team,
            workload=batch.workload,
            amount=batch.reservation_usd,
            ttl=ttl,
        ).hold
    except BudgetExceeded as exc:
        message = (
            f"The batch's worst case, ${plain(batch.reservation_usd)} for {batch.total} "
            f"request(s), does not fit a hard budget: {exc}"
        )
        _fail(batch, token, [_line_error(None, message, code="budget_exceeded")])
        return None


def _admit_chunk(
    batch: ClientBatch,
    chunk: list[tuple[Ask, Decimal]],
    *,
    hold: Hold,
    jobs: ClientBatchJobs,
    token: str,
    gaps: WriteGaps,
) -> None:
    """Admit a chunk of lines in one transaction of set-based inserts: their requests, their
    holds (out of the file's), the client's lines and the jobs' items. The admitted counter
    moves in the same transaction, so a crash loses the whole chunk or none of it."""
    now = timezone.now()
    first = batch.admitted + 1
    deadline_at = batch.created_at + COMPLETION_WINDOW
    # Every row is built before the transaction begins: while it runs, SQLite's one write
    # lock is ours and every realtime request that wants to write waits for it.
    requests, holds, lines = [], [], []
    for number, (ask, amount) in enumerate(chunk, start=first):
        params = ask_params(ask, max_tokens=_max_tokens(batch, ask))
        request = Request(
            team_id=batch.team_id,
            api_key_id=batch.api_key_id,
            workload=batch.workload,
            source=Request.Source.BATCH_API,
            params=params,
            prompt_fingerprint=prompt_fingerprint(params),
            metadata=ask.metadata,
            body_hash=Request.hash_body(ask_body(ask)),
            status=Request.Status.RUNNING,
            mode=Mode.BATCH,
            model=batch.model,
            decision_reason=f"Batched by the client (/v1/batches {batch.pk}).",
            created_at=now,
            started_at=now,
            deadline_at=deadline_at,
            updated_at=now,
        )
        requests.append(request)
        holds.append((f"req:{request.pk}", request, amount))
        lines.append(
            ClientBatchLine(
                batch=batch, request=request, custom_id=ask.metadata["custom_id"], line=number
            )
        )
    items = jobs.prepare(requests, now=now)
    with gaps.kept(), transaction.atomic():
        started = time.monotonic()
        moved = ClientBatch.objects.filter(
            pk=batch.pk, lease_token=token, admitted=batch.admitted, cancelling_at__isnull=True
        ).update(admitted=batch.admitted + len(chunk), lease_until=now + LEASE)
        if moved != 1:
            raise _Stop
        Request.objects.bulk_create(requests, batch_size=500)
        try:
            hold_split(parent=hold, children=holds, at=now)
        except ValueError:
            # Only a price back-dated into the batch's creation can get here.
            raise RuntimeError(
                f"client batch {batch.pk}: its lines now cost more than the reservation taken "
                "for them"
            ) from None
        ClientBatchLine.objects.bulk_create(lines, batch_size=1000)
        jobs.add(items)
    log.debug(
        "client batch %s: %d line(s) admitted in %.0f ms",
        batch.pk,
        len(chunk),
        (time.monotonic() - started) * 1000,
    )
    batch.admitted += len(chunk)


def _abandon(batch: ClientBatch, *, now: datetime) -> None:
    """Cancelled before its admission ended: the jobs built so far never reached a provider,
    so their requests end cancelled and every hold, the file's too, goes back."""
    client_batch_jobs_abandon(batch=batch, now=now)
    hold = Hold.objects.filter(key=f"clientbatch:{batch.pk}", status=Hold.Status.HELD).first()
    if hold is not None:
        hold_release(hold=hold)


def client_batch_cancel(*, batch: ClientBatch) -> bool:
    """Cancel a client's batch as OpenAI does: `cancelling` now, its provider batches cancelled
    at once (a worker step each, enqueued now, not at the next tick); `cancelled` once they
    ended and their results are in. An admission still running stops and gives everything
    back. False if the batch already ended."""
    if not client_batch_cancelling(batch=batch):
        return False
    started = BatchJob.objects.filter(client_batch=batch).exclude(
        status__in=(*BatchJob.TERMINAL, BatchJob.Status.BUILDING)
    )
    for job in started:
        if batch_cancel(job=job, reason=BatchJob.CancelReason.CLIENT):
            enqueue("batches.tasks.advance", job.pk)
    # Lines that left the batch's own jobs (a retry back in the shared buffer, an escalation)
    # are cancelled one by one; inside another provider batch a line keeps its hold until that
    # batch ends, as any cancelled request does.
    strays = (
        Request.objects.filter(
            batch_line__batch=batch,
            status__in=[Request.Status.QUEUED, Request.Status.RUNNING],
        )
        .exclude(batch_items__job__in=started)
        .exclude(batch_items__job__client_batch=batch, batch_items__job__status="building")
    )
    for request in strays:
        request_cancel(request=request)
    if batch.in_progress_at is None:
        enqueue("batches.tasks.admit_client_batch", batch.pk)
    return True
