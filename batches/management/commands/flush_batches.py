"""Flush the batch buffer now: every queued request (or one workload's) goes into jobs."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from batches import services
from routing.models import Workload


class Command(BaseCommand):
    help = (
        "Flush deferred requests into provider batch jobs now, without waiting for size, age or "
        "deadline. The worker cluster submits them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--workload", help="Only this workload's requests (its slug).")
        parser.add_argument("--team", help="With --workload: the team (slug) it belongs to.")

    def handle(self, *args, workload=None, team=None, **options):
        workload_ids = None
        if workload:
            found = Workload.objects.filter(slug=workload)
            if team:
                found = found.filter(team__slug=team)
            workload_ids = list(found.values_list("pk", flat=True))
            if not workload_ids:
                raise CommandError(
                    f"No workload {workload!r}" + (f" in team {team!r}" if team else "")
                )
        elif team:
            raise CommandError("--team narrows --workload; give both.")
        report = services.flush_then_enqueue(workload_ids=workload_ids, force=True)
        for job in report.jobs:
            self.stdout.write(
                f"job {job.pk}: {job.item_count} request(s) for {job.provider.slug}/"
                f"{job.model.model_id} ({job.lane}, team {job.team.slug})"
            )
        self.stdout.write(
            f"Flushed {report.requests} request(s) into {len(report.jobs)} job(s); "
            f"{len(report.escalated)} escalated to realtime (deadline too close)."
        )
