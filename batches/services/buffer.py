"""The buffer's flush: deferred requests (`queued`, mode batch) grouped by (team, model, lane)
into batch jobs when a group is full, due, or forced; requests whose deadline no batch can make
any more are escalated to realtime."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from batches.models import BatchItem, BatchJob
from batches.selectors import expected_turnaround
from batches.services.common import enqueue
from batches.services.rules import Waiting, flush_plan
from routing.events import request_changed, request_touch
from routing.models import LlmModel, Mode, Provider, Request


@dataclass
class FlushReport:
    jobs: list[BatchJob] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)  # request ids to serve realtime now

    @property
    def requests(self) -> int:
        return sum(job.item_count for job in self.jobs)


def line_bytes(request: Request) -> int:
    # An upper bound of the request's JSONL line without building it (the flush only splits).
    return len(str(request.params).encode()) + 512


def batches_flush(
    *, now: datetime | None = None, workload_ids: Iterable[int] | None = None, force: bool = False
) -> FlushReport:
    """Turn due buffered requests into jobs: one group per (team, model, lane) is flushed when
    it fills a provider batch, when its oldest request waited the policy's maximum, or when
    its earliest deadline needs it to leave now (`force`: every group, e.g. an admin's flush
    now). Requests whose deadline no batch can meet any more are escalated to realtime."""
    now = now or timezone.now()
    report = FlushReport()
    queued = Request.objects.filter(status=Request.Status.QUEUED, mode=Mode.BATCH)
    if workload_ids is not None:
        queued = queued.filter(workload_id__in=list(workload_ids))
    # Listed first: the flush of one group writes while the next are still to come.
    groups = list(
        queued.order_by().values_list("team_id", "model_id", "workload__latency_class").distinct()
    )
    for team_id, model_id, lane in groups:
        with transaction.atomic():
            jobs, escalated = _flush_group(
                team_id=team_id, model_id=model_id, lane=lane, queued=queued, now=now, force=force
            )
        report.jobs.extend(jobs)
        report.escalated.extend(escalated)
    return report


def _flush_group(
    *, team_id: int, model_id: int, lane: str, queued, now: datetime, force: bool
) -> tuple[list[BatchJob], list[str]]:
    model = LlmModel.objects.select_related("provider").get(pk=model_id)
    provider = model.provider
    rows = queued.filter(team_id=team_id, model_id=model_id, workload__latency_class=lane)
    # PostgreSQL: lock the rows so a concurrent flush or cancel cannot take them too (SQLite's
    # IMMEDIATE transactions already serialize writers).
    rows = list(
        rows.select_for_update(skip_locked=True, of=("self",))
        .select_related("workload__policy")
        .order_by("created_at")
    )
    if not rows:
        return [], []
    max_lines, max_bytes = provider.batch_limits
    plan = flush_plan(
        [
            Waiting(
                created_at=r.created_at,
                deadline_at=r.deadline_at,
                max_wait=r.workload.policy.max_batch_wait,
                margin=r.workload.policy.deadline_margin,
            )
            for r in rows
        ],
        now=now,
        turnaround=expected_turnaround(model=model),
        max_lines=max_lines,
        force=force,
    )
    keep = [rows[i] for i in plan.send]
    escalate = [rows[i] for i in plan.escalate]
    jobs = []
    for chunk in _chunks(keep, max_lines=max_lines, max_bytes=max_bytes):
        jobs.append(_job_create(provider, model, lane, chunk, reason=plan.reason, now=now))
    if escalate:
        requests_escalate(escalate, now=now, why="deadline too close for a batch")
    return jobs, [str(r.pk) for r in escalate]


def _chunks(requests: list[Request], *, max_lines: int, max_bytes: int) -> Iterable[list]:
    chunk, size = [], 0
    for request in requests:
        line = line_bytes(request)
        if chunk and (len(chunk) >= max_lines or size + line > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(request)
        size += line
    if chunk:
        yield chunk


def _job_create(
    provider: Provider, model: LlmModel, lane: str, requests: list[Request], *, reason, now
) -> BatchJob:
    deadlines = [r.deadline_at for r in requests if r.deadline_at]
    job = BatchJob.objects.create(
        team_id=requests[0].team_id,
        provider=provider,
        model=model,
        lane=lane,
        reason=reason,
        item_count=len(requests),
        earliest_deadline_at=min(deadlines) if deadlines else None,
        created_at=now,
        next_check_at=now,
    )
    BatchItem.objects.bulk_create(
        [
            BatchItem(job=job, request=r, custom_id=f"{job.custom_id_prefix}{r.pk.hex}")
            for r in requests
        ],
        batch_size=1000,
    )
    # One UPDATE, not a save per request; websocket subscribers catch up by updated_at.
    Request.objects.filter(pk__in=[r.pk for r in requests]).update(
        status=Request.Status.RUNNING, started_at=now, updated_at=now
    )
    return job


def requests_escalate(requests: list[Request], *, now: datetime, why: str) -> None:
    """Hand requests to routing's realtime path (routing.tasks.serve_escalated runs them): they
    wait as queued requests of mode realtime, which the reconciler re-enqueues if lost."""
    for request in requests:
        request.status = Request.Status.QUEUED
        request.mode = Mode.REALTIME
        request.decision_reason = f"{request.decision_reason} Escalated: {why}."[-2000:]
        request_touch(request)
        request.save(update_fields=["status", "mode", "decision_reason", "updated_at"])
        request_changed(request)


def flush_then_enqueue(**kwargs) -> FlushReport:
    """`batches_flush(**kwargs)`, then, once it is committed, each new job handed to a worker
    and each escalated request to routing's serve task: the one way a flush starts its work
    (the admin action, `flush_batches`, the worker's tick)."""
    with transaction.atomic():
        report = batches_flush(**kwargs)
        for job in report.jobs:
            enqueue("batches.tasks.advance", job.pk)
        for request_id in report.escalated:
            enqueue("routing.tasks.serve_escalated", request_id)
    return report
