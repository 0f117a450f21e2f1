"""Writes for batch jobs, one module per stage:

- `rules`: the pure flush and polling rules (no database): when a batch can still make a
  deadline, when to flush, how often to poll. The routing replay runs the same rules.
- `buffer`: the buffer's flush into jobs (`batches_flush`, `flush_then_enqueue`).
- `lifecycle`: one job's next step (`job_advance`: submit → poll → ingest), claimed with a lease.
- `ingest`: a finished provider batch's results, billed once each, and the job's end.
- `recovery`: cancellation, serving what a batch left unfinished, retries.
- `reconciler`: what crashed workers left behind at the providers.
- `files`: the OpenAI-compatible surface's stored files and the jobs of a client's batch.
- `client_batches`: a client's own /v1/batches, admitted by a worker and cancelled.
- `webhooks`: the signed notice of a finished job.
- `common`: the leases, crash points and task enqueueing they share.

Deferred requests wait in the buffer as `queued` requests of mode batch (routing's front door
put them there with a hold at the batch price). No transaction is open across a provider
call: intent is saved first, the call made, the outcome saved by id.

Request statuses these modules move: queued → running (flushed into a job) → completed, or back
to queued for a new batch (a retry or a resubmission), or queued with mode realtime (escalated:
routing serves it now), or failed.

What other modules call is re-exported here, so `from batches import services` reads as one
service layer.
"""

from batches.services.buffer import FlushReport, batches_flush, flush_then_enqueue
from batches.services.client_batches import (
    client_batch_admit,
    client_batch_cancel,
    client_batch_create,
)
from batches.services.common import StepResult, enqueue
from batches.services.files import (
    COMPLETION_WINDOW,
    SurfaceError,
    client_batch_refresh,
    file_chunks,
    file_path,
    file_store,
)
from batches.services.ingest import job_ingest
from batches.services.lifecycle import job_advance
from batches.services.reconciler import ReconcileReport, batches_reconcile
from batches.services.recovery import (
    batch_cancel,
    job_recover,
    job_retry_failed,
    job_serve_unfinished,
    job_unfinished,
    job_unfinished_estimate,
    request_cancel,
)
from batches.services.rules import (
    BATCH_HOLD_GRACE,
    FlushPlan,
    Waiting,
    batch_can_make,
    batch_late,
    flush_by,
    flush_plan,
    poll_backoff,
)
from batches.services.webhooks import job_notify, webhook_signature

__all__ = [
    "BATCH_HOLD_GRACE",
    "COMPLETION_WINDOW",
    "FlushPlan",
    "FlushReport",
    "ReconcileReport",
    "StepResult",
    "SurfaceError",
    "Waiting",
    "batch_can_make",
    "batch_cancel",
    "batch_late",
    "batches_flush",
    "batches_reconcile",
    "client_batch_admit",
    "client_batch_cancel",
    "client_batch_create",
    "client_batch_refresh",
    "enqueue",
    "file_chunks",
    "file_path",
    "file_store",
    "flush_by",
    "flush_plan",
    "flush_then_enqueue",
    "job_advance",
    "job_ingest",
    "job_notify",
    "job_recover",
    "job_retry_failed",
    "job_serve_unfinished",
    "job_unfinished",
    "job_unfinished_estimate",
    "poll_backoff",
    "request_cancel",
    "webhook_signature",
]
