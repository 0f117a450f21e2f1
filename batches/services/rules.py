"""The pure rules of the buffer and the lifecycle (no database): whether a batch can still
make a deadline, when a group must flush, how often to poll. The front door, the flush and the
routing replay (routing.replay) all decide with these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from batches.models import BatchJob

# Polling backoff: quick at first (small batches end in minutes), then every ten minutes.
POLL_FIRST = timedelta(seconds=10)
POLL_MAX = timedelta(minutes=10)
# The tick runs every minute and django-q2's scheduler may fire 30 s late: a deadline flush
# leaves this much before the last moment a batch could still make the deadline.
FLUSH_SLACK = timedelta(minutes=2)


@dataclass(frozen=True)
class Waiting:
    """What the flush rule reads of one buffered request."""

    created_at: datetime
    deadline_at: datetime | None
    max_wait: timedelta  # its policy's max batch wait
    margin: timedelta  # its policy's deadline margin


@dataclass(frozen=True)
class FlushPlan:
    reason: str | None  # why the group leaves now (BatchJob.Reason); None: it waits
    send: list[int]  # positions in the group to send now, in order
    escalate: list[int]  # positions no batch can serve in time any more


def batch_can_make(
    *, now: datetime, deadline_at: datetime | None, turnaround: timedelta, margin: timedelta
) -> bool:
    """Can a batch submitted now return before the deadline, keeping the margin?"""
    return deadline_at is None or now + turnaround + margin <= deadline_at


def batch_late(
    *,
    now: datetime,
    submitted_at: datetime,
    turnaround: timedelta,
    earliest_deadline_at: datetime,
    margin: timedelta,
) -> bool:
    """Will a running batch (expected to end at submit + turnaround, and not before now) end
    too late for its earliest deadline minus the margin?"""
    return max(submitted_at + turnaround, now) > earliest_deadline_at - margin


# A provider batch refused whole for a full queue (Azure's enqueued-token quota) is submitted
# again after this, doubling per refusal: the queue drains as earlier batches end.
QUOTA_FIRST = timedelta(seconds=30)
QUOTA_MAX = timedelta(minutes=30)


def quota_backoff(refusals: int) -> timedelta:
    """How long after its `refusals`-th quota refusal a job submits again."""
    return min(QUOTA_FIRST * (2 ** min(max(refusals - 1, 0), 16)), QUOTA_MAX)


def poll_backoff(polls: int) -> timedelta:
    """How long after its `polls`-th poll a running batch is polled again."""
    return min(POLL_FIRST * (1.5 ** min(polls, 20)), POLL_MAX)


def flush_by(waiting: Waiting, turnaround: timedelta) -> datetime:
    """When a queued request must leave the buffer: after the policy's maximum wait, or
    earlier if waiting longer would leave a batch too little time before its deadline."""
    by = waiting.created_at + waiting.max_wait
    if waiting.deadline_at:
        latest = waiting.deadline_at - turnaround - waiting.margin - FLUSH_SLACK
        by = min(by, latest)
    return by


def flush_plan(
    group: list[Waiting],
    *,
    now: datetime,
    turnaround: timedelta,
    max_lines: int,
    force: bool = False,
) -> FlushPlan:
    """One (team, model, lane) group of the buffer, oldest first: the whole group leaves when
    one request is due (its max wait, or its deadline needs it), or full batches only when it
    fills one; a request no batch can serve in time any more is escalated either way."""
    send, escalate, reason = [], [], BatchJob.Reason.MANUAL if force else None
    for position, waiting in enumerate(group):
        if not batch_can_make(
            now=now, deadline_at=waiting.deadline_at, turnaround=turnaround, margin=waiting.margin
        ):
            escalate.append(position)
            continue
        send.append(position)
        if reason is None and flush_by(waiting, turnaround) <= now:
            age_due = waiting.created_at + waiting.max_wait <= now
            reason = BatchJob.Reason.AGE if age_due else BatchJob.Reason.DEADLINE
    if reason is None and len(send) >= max_lines:
        reason = BatchJob.Reason.SIZE
    if reason == BatchJob.Reason.SIZE:
        send = send[: len(send) - len(send) % max_lines]  # full batches only; the rest waits
    return FlushPlan(reason=reason, send=send if reason is not None else [], escalate=escalate)


# What a deferred request's hold must outlive beyond its deadline (late batch results bill).
BATCH_HOLD_GRACE = timedelta(hours=1)
