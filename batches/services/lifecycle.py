"""One job, one step at a time: `job_advance` claims the job with a lease and runs its next
step (submit → poll → ingest). A create the provider may have received is looked for before
it is repeated, so a crash never submits a batch twice."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError
from django.db.models import F
from django.utils import timezone

from batches import jsonl
from batches.models import BatchJob
from batches.selectors import expected_turnaround
from batches.services.common import (
    CREATE_CLOCK_SLACK,
    INGEST_SLICE_SECONDS,
    RETRY_MAX,
    StepResult,
    crash_point,
    job_claim,
    job_items,
    job_release,
    job_save,
)
from batches.services.ingest import job_ingest
from batches.services.rules import POLL_FIRST, batch_late, poll_backoff, quota_backoff
from routing import asks, providers
from routing.models import LlmModel, Provider, Request
from routing.providers import (
    BatchInfo,
    ChatRequest,
    ProviderError,
)

log = logging.getLogger(__name__)


def job_advance(*, job_id: int, now: datetime | None = None) -> StepResult:
    """Run the job's next steps until it must wait (for the provider, or for a later slice of
    a long ingest). Safe to call any time from anywhere: the lease lets one caller in."""
    now = now or timezone.now()
    result = StepResult(job_id=job_id)
    token = job_claim(job_id, now)
    if token is None:
        return result
    result.ran = True
    # The step's own clock: waiting for a cancel and ingesting share one task's time.
    deadline = time.monotonic() + INGEST_SLICE_SECONDS
    crash_point("after_claim")
    job = BatchJob.objects.select_related("provider", "model", "team").get(pk=job_id)
    try:
        if job.status in (BatchJob.Status.PENDING, BatchJob.Status.SUBMITTING):
            _submit(job, now=now)
        if job.status == BatchJob.Status.RUNNING:
            _poll(job, now=now, deadline=deadline)
        if job.status == BatchJob.Status.INGESTING:
            result.escalated = job_ingest(job, now=now, deadline=deadline)
    except Exception as exc:
        # The provider is down or refused a control call (or a bug): try again later, backing
        # off, with the reason on the job for the admin. Every step is safe to repeat.
        delay = min(POLL_FIRST * (2 ** min(job.attempts, 10)), RETRY_MAX)
        if isinstance(exc, ProviderError):
            log.warning("batch job %s: %s; retrying in %s", job.pk, exc, delay)
        else:
            log.exception("batch job %s step failed; retrying in %s", job.pk, delay)
        job_save(
            job,
            attempts=F("attempts") + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:500],
            next_check_at=timezone.now() + delay,
        )
    finally:
        job_release(job, token)
    job.refresh_from_db(fields=["status"])
    result.status = job.status
    return result


def job_url(job: BatchJob) -> str:
    """The url every line of a job's provider batch asks: its client batch's endpoint (a
    client's /v1/responses lines stay Responses), else its model's kind's. Anthropic Messages
    lines go to an OpenAI model as chat (openai_api.batch_body translates them)."""
    url = job.client_batch.endpoint if job.client_batch_id else job.model.endpoint
    return job.model.endpoint if url == jsonl.MESSAGES_ENDPOINT else url


def _chat(request: Request, model: LlmModel) -> ChatRequest:
    return asks.chat_request(request, model)


def _submit(job: BatchJob, *, now: datetime) -> None:
    if job.cancel_requested_at and (job.status == BatchJob.Status.PENDING or _awaiting_quota(job)):
        # Nothing reached the provider (or only batches it refused): the job ends here and its
        # items go back.
        job_save(job, status=BatchJob.Status.INGESTING, ended_at=now, provider_status="cancelled")
        return
    # Only a submit an earlier step began (and died in) can have left a provider batch behind.
    resumed = job.status == BatchJob.Status.SUBMITTING
    if job.status == BatchJob.Status.PENDING:
        # Intent first: from here on a provider batch may exist, so recovery must look for it.
        job_save(job, status=BatchJob.Status.SUBMITTING, submit_started_at=now)
    endpoint = job.provider.endpoint()
    api = providers.batch_api(job.provider.kind)
    info = None
    if job.provider.kind == Provider.Kind.ANTHROPIC:
        # A fresh submit must not look: Anthropic batches carry no job id, so it would adopt
        # the batch of another job of its size whose worker died after creating it, and that
        # job would then create a second batch while this one ingests results that are not
        # its own (T2, tests/faults/test_worker_kills.py, found it).
        info = _find_anthropic_batch(job, api, endpoint) if resumed else None
        if info is _UNDECIDED:
            # Look again once the batch in doubt has ended and its results say whose it is.
            job_save(job, next_check_at=now + POLL_FIRST)
            return
        if info is None:
            requests = (
                {
                    "custom_id": item.custom_id,
                    "params": api.batch_params(_chat(item.request, job.model)),
                }
                for item in job_items(job)
            )
            info = api.batch_create(endpoint, requests=requests)
            crash_point("after_create")
    else:
        inline = None
        if not job.input_file_id:
            file_id = api.batch_find_file(endpoint, filename=job.input_filename)
            if file_id is None:
                with _input_file(job, api) as content:
                    inline = _inline_lines(job, content)
                    if inline is None:
                        file_id = api.batch_upload(
                            endpoint, filename=job.input_filename, content=content
                        )
                if inline is None:
                    crash_point("after_upload")
            if file_id is not None:
                job_save(job, input_file_id=file_id)
                crash_point("after_file_saved")
        info = _find_openai_batch(job, api, endpoint)
        if info is None:
            info = _create(job, api, endpoint, inline=inline)
            crash_point("after_create")
    try:
        job_save(
            job,
            provider_batch_id=info.id,
            status=BatchJob.Status.RUNNING,
            # Our clock, not the provider's: turnaround compares it with our ended_at.
            submitted_at=now,
            next_check_at=now + POLL_FIRST,
            provider_status=info.status,
            last_error="",
        )
    except IntegrityError:
        # Another job already owns that batch (only a mistaken adoption gets here): never let
        # two jobs share one. The reconciler cancels batches no job owns.
        raise ProviderError(
            f"provider batch {info.id} already belongs to another job",
            retryable=True,
            maybe_billed=False,
        ) from None
    crash_point("after_batch_saved")


def _create(job: BatchJob, api, endpoint, *, inline: list[dict] | None) -> BatchInfo:
    """Create the job's provider batch: of its uploaded file, or (Gemini, a small job) of its
    lines inline. Its metadata names the job, and which submit of it this is."""
    if job.provider.kind == Provider.Kind.GEMINI:
        # Gemini batches have no metadata: the display name carries the job, and the submit
        # count after a quota refusal (Gemini has none today; the rule is the same).
        return api.batch_create(
            endpoint,
            model=job.model.upstream_id,
            display_name=f"{job.input_filename.removesuffix('.jsonl')}-{job.quota_refusals}",
            input_file_id=job.input_file_id,
            inline=inline,
        )
    metadata = {"llmops_job": str(job.pk)}
    if job.quota_refusals:
        metadata["llmops_submit"] = str(job.quota_refusals)
    return api.batch_create(
        endpoint, input_file_id=job.input_file_id, metadata=metadata, url=job_url(job)
    )


def _inline_lines(job: BatchJob, content: BinaryIO) -> list[dict] | None:
    """A small Gemini job's lines, to send inline (results come back in the batch, no file
    either way); None when the job goes up as a file."""
    if job.provider.kind != Provider.Kind.GEMINI:
        return None
    size = content.seek(0, 2)
    content.seek(0)
    if size > providers.batch_api(job.provider.kind).INLINE_MAX_BYTES:
        return None
    lines = [json.loads(raw) for raw in content]
    content.seek(0)
    return lines


@contextmanager
def _input_file(job: BatchJob, api) -> Iterator[BinaryIO]:
    """The job's JSONL, written line by line to a spooled temporary file (in memory up to a
    few MB, on disk beyond): never the whole file as one string. Each provider's lines are its
    own: OpenAI's (and Azure's) ask a url; Gemini's carry a key and a request."""
    url = job_url(job)
    gemini = job.provider.kind == Provider.Kind.GEMINI
    with jsonl.spooled() as file:
        for item in job_items(job).iterator(chunk_size=2000):
            body = api.batch_body(_chat(item.request, job.model))
            if gemini:
                file.write(api.batch_line(custom_id=item.custom_id, body=body))
            else:
                file.write(jsonl.request_line(custom_id=item.custom_id, body=body, endpoint=url))
        file.seek(0)
        yield file


def _find_openai_batch(job: BatchJob, api, endpoint) -> BatchInfo | None:
    """A batch an earlier attempt created (its id never saved): found by our metadata, of this
    submit (a batch refused for a quota is an earlier one, ended: never adopted again)."""
    since = (job.submit_started_at or job.created_at) - CREATE_CLOCK_SLACK
    submit = str(job.quota_refusals) if job.quota_refusals else None
    for info in api.batch_list(endpoint, created_after=since.timestamp()):
        if info.metadata.get("llmops_job") != str(job.pk) or info.quota_refused:
            continue
        if info.metadata.get("llmops_submit") == submit:
            return info
    return None


# _find_anthropic_batch's answer when a batch may be this job's or another's: wait and see.
_UNDECIDED = BatchInfo(id="", status="", created_at=0)


def _find_anthropic_batch(job: BatchJob, api, endpoint) -> BatchInfo | None:
    """A batch an earlier attempt created (its id never saved), or None, or _UNDECIDED.
    Anthropic batches carry no metadata: a candidate is one created after this job's submit
    began, with exactly its number of requests, that no job owns. An ended one shows whose it
    is by its results' custom_ids (they carry the job id). A running one is adopted only when no
    other job with an unsaved submit of the same size could have created it; otherwise the
    answer waits for it to end (taking another job's batch would leave that job to create a
    second one, and this job to ingest results that are not its own)."""
    if job.status != BatchJob.Status.SUBMITTING or job.submit_started_at is None:
        return None
    since = job.submit_started_at - CREATE_CLOCK_SLACK
    candidates = [
        info
        for info in api.batch_list(endpoint, created_after=since.timestamp())
        if info.total == job.item_count
    ]
    # Ownership is checked against every job, not only recent ones: the provider's clock
    # (its created_at) may run ahead of ours, so an old job's batch can look new.
    owned = set(
        BatchJob.objects.filter(
            provider=job.provider, provider_batch_id__in=[info.id for info in candidates]
        ).values_list("provider_batch_id", flat=True)
    )
    rivals = list(
        BatchJob.objects.filter(
            provider=job.provider,
            status=BatchJob.Status.SUBMITTING,
            provider_batch_id=None,
            item_count=job.item_count,
        )
        .exclude(pk=job.pk)
        .values_list("submit_started_at", flat=True)
    )
    undecided = False
    for info in sorted(candidates, key=lambda info: info.created_at):
        if info.id in owned:
            continue
        if info.ended:
            with closing(api.batch_results(endpoint, info=info)) as results:
                first = next(results, None)
            if first is not None and first.custom_id.startswith(job.custom_id_prefix):
                return info
            continue  # another job's
        created = datetime.fromtimestamp(info.created_at, tz=UTC)
        if any(t is not None and t - CREATE_CLOCK_SLACK <= created for t in rivals):
            undecided = True
            continue
        return info
    return _UNDECIDED if undecided else None


def _poll(job: BatchJob, *, now: datetime, deadline: float | None = None) -> None:
    endpoint = job.provider.endpoint()
    api = providers.batch_api(job.provider.kind)
    if job.cancel_requested_at and not job.cancel_sent_at:
        try:
            api.batch_cancel(endpoint, batch_id=job.provider_batch_id)
        except ProviderError as exc:
            if exc.status != 400:  # 400: it ended meanwhile; the retrieve below says how
                raise
        job_save(job, cancel_sent_at=now)
    info = api.batch_retrieve(endpoint, batch_id=job.provider_batch_id)
    if info.quota_refused and not job.cancel_requested_at:
        _submit_later(job, info, now=now)
        return
    if job.cancel_requested_at and not info.ended:
        info = _await_cancel(api, endpoint, job, info, deadline=deadline)
    fields = {
        "provider_status": info.status,
        "provider_completed": info.completed,
        "provider_failed": info.failed,
        "polls": F("polls") + 1,
        "last_error": "",
    }
    if info.ended:
        fields.update(
            status=BatchJob.Status.INGESTING,
            ended_at=now,
            output_file_id=info.output_file_id or "",
            error_file_id=info.error_file_id or "",
            next_check_at=now,
        )
        if info.errors:
            fields["last_error"] = "; ".join(info.errors)[:500]
    elif job.cancel_requested_at:
        # A cancel is promised to whoever asked: look again soon, not after the backoff a
        # long-running batch has reached, so the job ends within one poll of the provider's.
        fields["next_check_at"] = now + POLL_FIRST
    else:
        fields["next_check_at"] = now + poll_backoff(job.polls)
        if _misses_deadline(job, now=now):
            # Cancel now: the completed items are kept, the rest served before the deadline.
            fields.update(
                cancel_requested_at=now,
                cancel_reason=BatchJob.CancelReason.DEADLINE,
                next_check_at=now,
            )
    job_save(job, **fields)
    job.refresh_from_db(fields=["polls"])
    crash_point("after_poll")


def _awaiting_quota(job: BatchJob) -> bool:
    """Waiting to submit again after a quota refusal, with no provider batch of this submit
    (a crash mid-create leaves one to find: then the job goes on as any submit)."""
    if not job.quota_refusals or job.status != BatchJob.Status.SUBMITTING:
        return False
    api = providers.batch_api(job.provider.kind)
    return _find_openai_batch(job, api, job.provider.endpoint()) is None


def _submit_later(job: BatchJob, info: BatchInfo, *, now: datetime) -> None:
    """The provider refused the whole batch because its queue is full (nothing ran, nothing is
    billed): submit the same file again after a backoff that doubles per refusal, unless the
    wait would make the job miss its deadline — then it ends, and its requests are served
    before the deadline like a late batch's."""
    refusals = job.quota_refusals + 1
    wait = quota_backoff(refusals)
    why = "; ".join(info.errors)[:300] or "the provider's batch queue is full"
    refused = f"{info.id} refused for its queue quota ({why})"
    log.warning("batch job %s: %s", job.pk, refused)
    if _misses_deadline(job, now=now, submitted_at=now + wait):
        job_save(
            job,
            status=BatchJob.Status.INGESTING,
            ended_at=now,
            provider_status=info.status,
            cancel_requested_at=now,
            cancel_reason=BatchJob.CancelReason.DEADLINE,
            next_check_at=now,
            last_error=f"{refused}; too late to wait"[:500],
        )
        return
    job_save(
        job,
        status=BatchJob.Status.SUBMITTING,
        provider_batch_id=None,
        quota_refusals=refusals,
        provider_status=info.status,
        next_check_at=now + wait,
        last_error=f"{refused}; submitting again in {wait}"[:500],
    )


def _await_cancel(api, endpoint, job: BatchJob, info: BatchInfo, *, deadline) -> BatchInfo:
    """Look again for a little while: a provider often confirms a cancel within seconds, and
    waiting here ends the job now instead of at the next tick of the scheduler (a minute)."""
    wait = settings.LLMOPS_BATCH_CANCEL_WAIT_SECONDS
    until = time.monotonic() + wait
    if deadline is not None:
        until = min(until, deadline - INGEST_SLICE_SECONDS / 2)  # leave the ingest its time
    while not info.ended and time.monotonic() + CANCEL_LOOK_EVERY <= until:
        time.sleep(CANCEL_LOOK_EVERY)
        info = api.batch_retrieve(endpoint, batch_id=job.provider_batch_id)
    return info


# How often a step waiting for a provider's cancel looks again, in seconds.
CANCEL_LOOK_EVERY = 1


def _misses_deadline(job: BatchJob, *, now: datetime, submitted_at: datetime | None = None) -> bool:
    """Will the batch (expected to end at submit + observed p90) end too late for its earliest
    deadline, minus the margin of the tightest policy among its items? `submitted_at`: a
    submit still to come (after a quota refusal's wait)."""
    submitted_at = submitted_at or job.submitted_at
    if not job.earliest_deadline_at or not submitted_at:
        return False
    margin = max(
        (
            r.workload.policy.deadline_margin
            for r in Request.objects.filter(batch_items__job=job)
            .select_related("workload__policy")
            .order_by("deadline_at")[:50]
        ),
        default=timedelta(0),
    )
    return batch_late(
        now=now,
        submitted_at=submitted_at,
        turnaround=expected_turnaround(model=job.model),
        earliest_deadline_at=job.earliest_deadline_at,
        margin=margin,
    )
