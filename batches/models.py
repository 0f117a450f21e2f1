"""Provider batch jobs: a database state machine (the truth; queue messages carry only ids).

(building ─►) pending ─► submitting ─► running ─► ingesting ─► completed | cancelled | expired
   └─(cancelled before anything reached the provider)─► cancelled                 | failed

A job of a client's own batch (/v1/batches) is `building` while a worker admits the client's
file into it, chunk by chunk; nothing submits it until the last line is in.

Every step is idempotent and claimed with a lease taken by a conditional UPDATE, so a worker
that dies mid-step leaves the job for the reconciler, which runs the same step again: the input
file is found again by its name, the provider batch by its metadata (OpenAI) or its creation
window (Anthropic), and results by (job, custom_id).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.fields import MoneyField
from routing.models import ApiKey, LatencyClass, LlmModel, Provider, Request, Team, Workload


class BatchJob(models.Model):
    class Status(models.TextChoices):
        BUILDING = "building", "Building (its client batch is being admitted)"
        PENDING = "pending", "Pending (nothing sent yet)"
        SUBMITTING = "submitting", "Submitting"
        RUNNING = "running", "Running at the provider"
        INGESTING = "ingesting", "Ingesting results"
        COMPLETED = "completed"
        CANCELLED = "cancelled"
        EXPIRED = "expired"
        FAILED = "failed"

    TERMINAL = (Status.COMPLETED, Status.CANCELLED, Status.EXPIRED, Status.FAILED)

    class Reason(models.TextChoices):
        SIZE = "size", "Buffer reached the provider's limit"
        AGE = "age", "Oldest request waited the policy's maximum"
        DEADLINE = "deadline", "Earliest deadline"
        MANUAL = "manual", "Flushed by hand"
        RETRY = "retry", "Retry of failed items"
        CLIENT = "client", "A client's own batch (/v1/batches)"

    class CancelReason(models.TextChoices):
        USER = "user", "Cancelled by a user"
        CLIENT = "client", "Its client batch was cancelled"
        DEADLINE = "deadline", "Would miss a deadline: escalated"

    # Cancelled on someone's word: what did not run ends cancelled, nothing is served elsewhere.
    STOPPED = (CancelReason.USER, CancelReason.CLIENT)

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="batch_jobs")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="batch_jobs")
    model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="batch_jobs")
    # A near-realtime request never waits behind a nightly flush: they are flushed apart.
    lane = models.CharField(max_length=16, choices=LatencyClass.choices)
    # The client's own batch (/v1/batches) whose lines this job runs, if any: its lines get
    # jobs of their own, so cancelling it cancels exactly these.
    client_batch = models.ForeignKey(
        "ClientBatch", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=10, choices=Reason.choices)

    item_count = models.PositiveIntegerField(default=0)
    succeeded_count = models.PositiveIntegerField(default=0)
    errored_count = models.PositiveIntegerField(default=0)
    unfinished_count = models.PositiveIntegerField(
        default=0, help_text="Items that never ran (cancelled, expired, missing from results)."
    )
    # What the provider said at the last poll.
    provider_status = models.CharField(max_length=20, blank=True)
    provider_completed = models.PositiveIntegerField(default=0)
    provider_failed = models.PositiveIntegerField(default=0)

    input_file_id = models.CharField(max_length=200, blank=True)
    # NULL until created: the unique constraint then makes one provider batch one job's only.
    provider_batch_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    output_file_id = models.CharField(max_length=200, blank=True)
    error_file_id = models.CharField(max_length=200, blank=True)

    earliest_deadline_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)  # flushed
    submit_started_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)  # the provider batch exists
    ended_at = models.DateTimeField(null=True, blank=True)  # the provider batch ended
    ingest_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)  # the last result ingested

    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=10, choices=CancelReason.choices, blank=True)
    cancel_sent_at = models.DateTimeField(null=True, blank=True)

    next_check_at = models.DateTimeField(default=timezone.now)
    polls = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(
        default=0, help_text="Steps that failed and were retried."
    )
    last_error = models.CharField(max_length=500, blank=True)
    # Provider batches refused whole for a queue quota (Azure's enqueued tokens per deployment,
    # OpenAI's per organisation): each was submitted again after a backoff. The count also
    # tells this submit's batch from the refused ones (its metadata carries it).
    quota_refusals = models.PositiveIntegerField(
        default=0, help_text="Provider batches refused for a queue quota and submitted again."
    )
    # Whoever holds an unexpired lease runs the job's next step; a dead worker's lease lapses.
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_check_at"], name="batchjob_due"),
            models.Index(fields=["team", "-created_at"], name="batchjob_team_recent"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_batch_id"],
                condition=Q(provider_batch_id__isnull=False),
                name="batchjob_one_job_per_provider_batch",
            )
        ]

    def __str__(self) -> str:
        return f"batch job {self.pk}"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def answered(self) -> int:
        """Items with an outcome: final counts once ingested, the provider's until then."""
        if self.is_terminal:
            return self.succeeded_count + self.errored_count + self.unfinished_count
        return min(self.provider_completed + self.provider_failed, self.item_count)

    @property
    def custom_id_prefix(self) -> str:
        return f"llmops-{self.pk}-"

    @property
    def input_filename(self) -> str:
        # The file name carries the job id: a crash after the upload finds the file by it.
        return f"llmops-job-{self.pk}.jsonl"

    @property
    def turnaround(self):
        if self.submitted_at and self.ended_at:
            return self.ended_at - self.submitted_at
        return None


class BatchItem(models.Model):
    """One request inside one job. A request retried or resubmitted gets a new item in a new
    job; the ledger key is the item's custom_id, so each provider answer bills once."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        ERRORED = "errored"  # ran, and the provider refused it
        INVALID = "invalid"  # a result we could not trust (no usage, unreadable): quarantined
        EXPIRED = "expired"  # never ran: the window ended
        CANCELLED = "cancelled"  # never ran: the batch was cancelled first
        NOT_RUN = "not_run"  # missing from the results

    class Next(models.TextChoices):
        NONE = "", "—"
        REBATCHED = "rebatched", "Resubmitted in a new batch"
        ESCALATED = "escalated", "Served realtime"
        RETRIED = "retried", "Retried"
        FAILED = "failed", "Request failed"
        DROPPED = "dropped", "Request cancelled by its client"
        CANCELLED = "cancelled", "Cancelled with the job"

    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="items")
    request = models.ForeignKey(Request, on_delete=models.PROTECT, related_name="batch_items")
    custom_id = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    next_step = models.CharField(max_length=10, choices=Next.choices, blank=True)
    error = models.CharField(max_length=500, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "custom_id"], name="batchitem_custom_id_once"),
            models.UniqueConstraint(fields=["job", "request"], name="batchitem_request_once"),
        ]
        indexes = [models.Index(fields=["job", "status"], name="batchitem_job_status")]

    def __str__(self) -> str:
        return self.custom_id


def _public_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


class StoredFile(models.Model):
    """A file of the OpenAI-compatible surface (/v1/files): a client's batch input, or the
    output and error files we write for its batch. Content lives on disk under
    LLMOPS_DATA_DIR/files, never in the database."""

    class Purpose(models.TextChoices):
        BATCH = "batch"
        BATCH_OUTPUT = "batch_output"

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="stored_files")
    purpose = models.CharField(max_length=12, choices=Purpose.choices)
    filename = models.CharField(max_length=255)
    bytes = models.PositiveBigIntegerField(default=0)
    lines = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=200, blank=True, help_text="The one model its lines name.")
    endpoint = models.CharField(
        max_length=100,
        default="/v1/chat/completions",
        help_text="The one url its lines ask (/v1/chat/completions or /v1/embeddings).",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "-created_at"], name="storedfile_team_recent")]

    def __str__(self) -> str:
        return self.id

    @classmethod
    def new_id(cls) -> str:
        return _public_id("file-")


class ClientBatch(models.Model):
    """A batch as an OpenAI client sees it (/v1/batches). Its lines become ordinary deferred
    requests, which the buffer puts in provider batch jobs (possibly several, possibly another
    provider); its status and files are derived from those requests."""

    class Status(models.TextChoices):
        VALIDATING = "validating"
        FAILED = "failed"
        IN_PROGRESS = "in_progress"
        FINALIZING = "finalizing"
        COMPLETED = "completed"
        EXPIRED = "expired"
        CANCELLING = "cancelling"
        CANCELLED = "cancelled"

    ENDED = (Status.FAILED, Status.COMPLETED, Status.EXPIRED, Status.CANCELLED)

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="client_batches")
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    workload = models.ForeignKey(Workload, on_delete=models.PROTECT, related_name="client_batches")
    # The batch-capable model of the workload's chain its lines run on (set by validation).
    model = models.ForeignKey(
        LlmModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    input_file = models.ForeignKey(StoredFile, on_delete=models.PROTECT, related_name="+")
    output_file = models.ForeignKey(
        StoredFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error_file = models.ForeignKey(
        StoredFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint = models.CharField(max_length=100)
    completion_window = models.CharField(max_length=10, default="24h")
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices)
    total = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Admission, done by a worker in two resumable passes over the file: every line checked
    # (and its worst case summed) first, then admitted chunk by chunk after one reservation
    # for the whole file. A worker that dies resumes where the counters say.
    validated = models.PositiveIntegerField(default=0)
    admitted = models.PositiveIntegerField(default=0)
    reservation_usd = MoneyField(default=0)  # USD: the worst case of the lines validated so far
    # OpenAI's `errors.data` of a batch that failed validation: [{code, message, param, line}].
    errors = models.JSONField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    failed_at = models.DateTimeField(null=True, blank=True)
    in_progress_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "client batches"
        indexes = [models.Index(fields=["team", "-created_at"], name="clientbatch_team_recent")]

    def __str__(self) -> str:
        return self.id

    @classmethod
    def new_id(cls) -> str:
        return _public_id("batch_")


class ClientBatchLine(models.Model):
    """One line of a client's batch file: the request it became, under the client's custom_id."""

    batch = models.ForeignKey(ClientBatch, on_delete=models.CASCADE, related_name="lines")
    request = models.OneToOneField(Request, on_delete=models.PROTECT, related_name="batch_line")
    custom_id = models.CharField(max_length=64)
    line = models.PositiveIntegerField()

    class Meta:
        ordering = ["batch", "line"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "custom_id"], name="clientline_custom_id_once")
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.custom_id}"
