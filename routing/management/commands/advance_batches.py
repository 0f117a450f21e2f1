"""Run the batch machinery in this process: what the worker's schedules do, inline. A routing
command, not a batches one: it also serves escalated requests through routing's front door."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from django.utils import timezone

from batches import selectors, services
from routing.models import Mode, Request
from routing.services import request_serve_escalated


class Command(BaseCommand):
    help = (
        "Admit clients' batch files, flush due buffers, run every due job step and serve "
        "escalated requests here, without a worker cluster: for operators and tests. "
        "--until-idle repeats until nothing is due."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--flush", action="store_true", help="First flush every buffer, due or not."
        )
        parser.add_argument("--reconcile", action="store_true", help="Also run the reconciler.")
        parser.add_argument(
            "--until-idle",
            type=float,
            metavar="SECONDS",
            help="Repeat until no job has a step due, for at most this many seconds.",
        )

    def handle(self, *args, flush=False, reconcile=False, until_idle=None, **options):
        if flush:
            report = services.batches_flush(force=True)
            self.stdout.write(
                f"flushed {report.requests} request(s) into {len(report.jobs)} job(s)"
            )
        deadline = time.monotonic() + (until_idle or 0)
        while True:
            ran = self._once()
            if not until_idle or not ran or time.monotonic() > deadline:
                break
        if reconcile:
            report = services.batches_reconcile()
            self.stdout.write(f"reconcile: {report.as_dict()}")

    def _once(self) -> int:
        admitted = 0
        now = timezone.now()
        for batch_id in selectors.client_batches_admitting(now=now).values_list("pk", flat=True):
            while True:
                step = services.client_batch_admit(batch_id=batch_id)
                admitted += 1
                if not step.more:
                    break
            self.stdout.write(f"client batch {batch_id}: {step.status or 'busy'}")
        flushed = services.batches_flush()
        steps = 0
        for job_id in selectors.jobs_due(now=timezone.now()).values_list("pk", flat=True):
            result = services.job_advance(job_id=job_id)
            steps += result.ran
            self.stdout.write(f"job {job_id}: {result.status or 'busy'}")
        escalated = Request.objects.filter(
            status=Request.Status.QUEUED, mode=Mode.REALTIME
        ).values_list("pk", flat=True)
        for request_id in escalated:
            served = request_serve_escalated(request_id=str(request_id))
            self.stdout.write(f"escalated request {request_id}: {served and served.status}")
        return admitted + len(flushed.jobs) + steps + len(escalated)
