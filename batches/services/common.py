"""What every stage of a batch job shares: the lease that lets one worker run a job's step,
the crash points the fault suite kills workers at, the gaps that let realtime writers in
between long batch writes' transactions, and tasks enqueued after commit."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django_q.tasks import async_task

from batches.models import BatchItem, BatchJob

log = logging.getLogger(__name__)


# Longer than any step runs (the task timeout is 60 s; a step yields INGEST_SLICE_SECONDS
# after it began and goes on in the next).
LEASE = timedelta(minutes=3)
INGEST_SLICE_SECONDS = 40
# Bounded retries: an item that failed this many times fails its request.
MAX_ITEM_ATTEMPTS = 3
# A retried request waits for a flush and a batch again.
RETRY_HOLD_TTL = timedelta(hours=25)
# Failed steps (a provider down) back off to this at most.
RETRY_MAX = timedelta(minutes=15)
# A create we cannot prove did not happen is looked for in batches created this long before it.
CREATE_CLOCK_SLACK = timedelta(minutes=2)


def crash_point(name: str) -> None:
    """Die here, as a SIGKILLed worker would, when LLMOPS_BATCH_CRASH_AT names this point: the
    crash tests prove every window has a recovery. Does nothing unless set."""
    if name == settings.LLMOPS_BATCH_CRASH_AT:
        log.warning("crash point %s: killing this process", name)
        os.kill(os.getpid(), signal.SIGKILL)


class WriteGaps:
    """Keeps LLMOPS_BATCH_WRITE_PAUSE_MS between the write transactions of one long batch write
    (admission, ingest, a cancelled job's items), so that waiting writers get SQLite's one
    lock. What the write does between two transactions (reading and pricing the next chunk)
    counts towards the gap: the lock was free meanwhile, so only the rest is slept. A fixed
    sleep on top of that work left the lock no freer and made long writes longer: 50,000
    results' ingest by 2.6 s, and tests/live/test_batch_admission_scale.py's 50,000-line
    admission took 164 s with it, 106 s without. Slept time is counted (`slept`, `count`) for
    the bench."""

    def __init__(self) -> None:
        self._ended: float | None = None  # when the last transaction ended (monotonic)
        self.count, self.slept = 0, 0.0

    @contextmanager
    def kept(self) -> Iterator[None]:
        """Around one transaction: waits what is left of the gap since the last one ended."""
        pause = settings.LLMOPS_BATCH_WRITE_PAUSE_MS / 1000
        if self._ended is not None and pause:
            left = pause - (time.monotonic() - self._ended)
            if left > 0:
                self.count += 1
                self.slept += left
                time.sleep(left)
        try:
            yield
        finally:
            self._ended = time.monotonic()


@dataclass
class StepResult:
    job_id: int
    ran: bool = False  # False: another worker holds the job, or it is finished
    status: str = ""
    escalated: list[str] = field(default_factory=list)


def job_claim(job_id: int, now: datetime) -> str | None:
    token = secrets.token_hex(8)
    changed = (
        BatchJob.objects.filter(pk=job_id)
        .exclude(status__in=(*BatchJob.TERMINAL, BatchJob.Status.BUILDING))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_token=token, lease_until=now + LEASE)
    )
    return token if changed == 1 else None


def job_release(job: BatchJob, token: str, **fields) -> None:
    BatchJob.objects.filter(pk=job.pk, lease_token=token).update(
        lease_token="", lease_until=None, **fields
    )


def job_save(job: BatchJob, **fields) -> None:
    for name, value in fields.items():
        setattr(job, name, value)
    BatchJob.objects.filter(pk=job.pk).update(**fields)


def job_items(job: BatchJob):
    return BatchItem.objects.filter(job=job).select_related("request").order_by("id")


def enqueue(func: str, *args) -> None:
    """A django-q2 task by name, after commit: a worker must never pick up an id whose row it
    cannot see yet. (By name: routing's tasks are above this layer.)"""
    transaction.on_commit(lambda: async_task(func, *args))
