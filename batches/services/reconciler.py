"""The reconciler: provider batches no job owns (a create that crashed before its id was
saved) found by their input file's name and adopted or cancelled, so nothing is billed twice
or left running."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from batches.models import BatchJob
from batches.services.common import CREATE_CLOCK_SLACK
from routing import providers
from routing.models import Provider
from routing.providers import (
    BatchInfo,
    ProviderError,
)

log = logging.getLogger(__name__)


# How far back the reconciler looks at the provider's batches and files.
ORPHAN_LOOKBACK = timedelta(days=2)
INPUT_FILENAME = re.compile(r"llmops-job-(\d+)\.jsonl")


@dataclass
class ReconcileReport:
    cancelled: list[str] = field(default_factory=list)  # provider batches nobody owns
    deleted_files: list[str] = field(default_factory=list)  # input files nobody references
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "cancelled": self.cancelled,
            "deleted_files": self.deleted_files,
            "errors": self.errors,
        }


def batches_reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """Clean up after crashes the job steps cannot see: a provider batch no job owns (a
    duplicate create, a job deleted) is cancelled, since it costs money; an input file no job
    references is deleted. Stalled jobs need nothing here: their lease lapses and the tick
    enqueues them again. A batch or file a job is still submitting is left for it to adopt."""
    now = now or timezone.now()
    report = ReconcileReport()
    since = now - ORPHAN_LOOKBACK
    providers_used = Provider.objects.filter(
        supports_batch=True, batch_jobs__created_at__gte=since
    ).distinct()
    for provider in providers_used:
        try:
            _reconcile_provider(provider, since=since, report=report)
        except ProviderError as exc:
            report.errors.append(f"{provider.slug}: {exc}")
            log.warning("batch reconcile of %s: %s", provider.slug, exc)
    return report


def _reconcile_provider(provider: Provider, *, since: datetime, report: ReconcileReport) -> None:
    endpoint = provider.endpoint()
    api = providers.batch_api(provider.kind)
    jobs = BatchJob.objects.filter(provider=provider, created_at__gte=since - ORPHAN_LOOKBACK)
    owned = set(jobs.exclude(provider_batch_id=None).values_list("provider_batch_id", flat=True))
    submitting = list(jobs.filter(status=BatchJob.Status.SUBMITTING, provider_batch_id=None))
    for info in api.batch_list(endpoint, created_after=since.timestamp()):
        if info.id in owned or info.ended or info.status == "cancelling":
            continue
        if not _unowned(provider, info, jobs=jobs, submitting=submitting):
            continue
        api.batch_cancel(endpoint, batch_id=info.id)
        report.cancelled.append(info.id)
        log.warning("cancelled provider batch %s of %s: no job owns it", info.id, provider.slug)
    if provider.kind == Provider.Kind.ANTHROPIC:
        return
    referenced = set(jobs.exclude(input_file_id="").values_list("input_file_id", flat=True))
    for file_id, filename in api.batch_files(endpoint):
        match = INPUT_FILENAME.fullmatch(filename or "")
        if not match or file_id in referenced:
            continue
        job = jobs.filter(pk=int(match[1])).first()
        if job is not None and not job.input_file_id and not job.is_terminal:
            continue  # its upload crashed before the id was saved: the job adopts it
        api.batch_delete_file(endpoint, file_id=file_id)
        report.deleted_files.append(file_id)


def _unowned(provider: Provider, info: BatchInfo, *, jobs, submitting: list[BatchJob]) -> bool:
    if provider.kind != Provider.Kind.ANTHROPIC:
        job_ref = info.metadata.get("llmops_job")
        if job_ref is None or not job_ref.isdigit():
            return False  # not ours: somebody else's batch on the same account
        return not any(job.pk == int(job_ref) for job in submitting)
    # Anthropic batches carry no metadata: ours are those created while one of our jobs was
    # submitting, with its number of requests. One such job still submitting adopts it; one
    # that already has another batch got a duplicate.
    created = datetime.fromtimestamp(info.created_at, tz=UTC)
    window = (created - CREATE_CLOCK_SLACK, created + CREATE_CLOCK_SLACK)
    candidates = jobs.filter(item_count=info.total, submit_started_at__range=window).values_list(
        "provider_batch_id", flat=True
    )
    return bool(candidates) and all(batch_id is not None for batch_id in candidates)
