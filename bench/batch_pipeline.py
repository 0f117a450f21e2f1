"""M4: the batch pipeline. A job of N deferred requests is built and uploaded to the provider,
and its N results ingested into the ledger, through the same services the worker runs
(batches_flush, job_advance) against the simulator over HTTP with the official SDK; then the
ingest is run again and must record nothing.

    .venv/bin/python bench/batch_pipeline.py [--size N] [--quick] [--json OUT]

Peak memory is the process's resident high-water mark (VmHWM, reset before each phase through
/proc/self/clear_refs) above its resident size when the phase began.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COMMAND = ".venv/bin/python bench/batch_pipeline.py"
TARGETS = {"build_s": 5.0, "ingest_s": 10.0, "extra_mb": 100.0}
FULL_SIZE = 50_000  # the size the targets are for


def _status_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


class Phase:
    """Seconds and peak resident memory above the start of one phase."""

    def __enter__(self):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.rss_kb = _status_kb("VmRSS")
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started
        self.extra_mb = (_status_kb("VmHWM") - self.rss_kb) / 1024
        return False


def run(size: int, sim) -> dict:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from batches.models import BatchJob
    from batches.services import _ingest, batches_flush, job_advance
    from billing.models import Hold, LedgerEntry
    from routing.apis import openai_ask
    from routing.models import Request, Team, Workload
    from routing.services import requests_admit_deferred

    call_command("seed_demo", "--simulator-url", sim.base_url, stdout=io.StringIO())
    # The provider holds the batch until told otherwise: build and ingest are timed apart.
    sim.config(batch_turnaround_s=3600)
    team = Team.objects.get(slug="acme")
    workload = Workload.objects.select_related("policy", "team").get(
        team=team, slug="review-moderation"
    )
    asks = [
        openai_ask(
            workload,
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"Is review {i} genuine? It says: great"}],
                "max_tokens": 16,
            },
            source=Request.Source.BATCH_API,
            metadata={},
        )
        for i in range(size)
    ]
    with Phase() as admit:
        requests_admit_deferred(team=team, api_key=None, asks=asks, source=Request.Source.BATCH_API)
    report = batches_flush(force=True)
    jobs = [job.pk for job in report.jobs]

    def advance_until(done) -> int:
        steps = 0
        while not all(done(BatchJob.objects.get(pk=pk)) for pk in jobs):
            for pk in jobs:
                job_advance(job_id=pk, now=timezone.now())
            steps += 1
        return steps

    with Phase() as build:
        advance_until(lambda job: job.status != BatchJob.Status.PENDING
                      and job.status != BatchJob.Status.SUBMITTING)  # fmt: skip
    sim.advance(3600)
    with Phase() as ingest:
        ingest_steps = advance_until(lambda job: job.is_terminal)
    entries = LedgerEntry.objects.filter(request__workload=workload).count()
    with Phase() as again:
        for pk in jobs:
            _ingest(BatchJob.objects.get(pk=pk), now=timezone.now())
    entries_after = LedgerEntry.objects.filter(request__workload=workload).count()
    completed = Request.objects.filter(workload=workload, status=Request.Status.COMPLETED).count()
    return {
        "size": size,
        "jobs": len(jobs),
        "database": connection.vendor,
        "admit_s": round(admit.seconds, 2),
        "build_s": round(build.seconds, 2),
        "build_extra_mb": round(build.extra_mb, 1),
        "ingest_s": round(ingest.seconds, 2),
        "ingest_steps": ingest_steps,
        "ingest_extra_mb": round(ingest.extra_mb, 1),
        "ingest_per_s": round(size / ingest.seconds, 1),
        "reingest_s": round(again.seconds, 3),
        "completed": completed,
        "ledger_entries": entries,
        "reingest_new_entries": entries_after - entries,
        "holds_left": Hold.objects.filter(status=Hold.Status.HELD).count(),
    }


def markdown(f: dict) -> str:
    def verdict(value: float, target: float, unit: str) -> str:
        if value <= target:
            return f"met (≤ {target:g} {unit})"
        return f"**missed** by {value - target:.1f} {unit} (target ≤ {target:g} {unit})"

    lines = [
        f"`{COMMAND} --size {f['size']}`: {f['size']:,} requests of one workload admitted as a "
        f"client batch, flushed into {f['jobs']} provider job(s), built and uploaded as JSONL, "
        "completed by the simulator, and ingested into the ledger (one entry per result, "
        f"each settling its request's budget hold), on {f['database']}, one process.",
        "",
        "| phase | seconds | extra memory (MB) | target |",
        "|---|---|---|---|",
        f"| admit {f['size']:,} requests (setup, not a target) | {f['admit_s']} | — | — |",
        f"| build + upload | {f['build_s']} | {f['build_extra_mb']} | "
        f"{verdict(f['build_s'], TARGETS['build_s'], 's')} |",
        f"| ingest ({f['ingest_steps']} worker steps, {f['ingest_per_s']:,} results/s) | "
        f"{f['ingest_s']} | {f['ingest_extra_mb']} | "
        f"{verdict(f['ingest_s'], TARGETS['ingest_s'], 's')} |",
        f"| ingest again | {f['reingest_s']} | — | new entries: {f['reingest_new_entries']} |",
        "",
        f"Completed requests {f['completed']:,}, ledger entries {f['ledger_entries']:,}, budget "
        f"holds left open {f['holds_left']}.",
    ]
    if f["size"] < FULL_SIZE:
        scale = FULL_SIZE / f["size"]
        lines += [
            "",
            f"This run used {f['size']:,} requests, not the target's {FULL_SIZE:,}: at the rates "
            f"measured here {FULL_SIZE:,} would take about {f['build_s'] * scale:.0f} s to build "
            f"and {f['ingest_s'] * scale:.0f} s to ingest (a linear extrapolation, not a "
            f"measurement; run `{COMMAND} --size {FULL_SIZE}` for the real figure).",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=FULL_SIZE)
    parser.add_argument("--quick", action="store_true", help="2,000 requests, for development")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    size = 2_000 if args.quick else args.size
    with tempfile.TemporaryDirectory(prefix="llmops-bench-m4-") as data_dir:
        os.environ["LLMOPS_DATA_DIR"] = data_dir
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
        for name in ("DATABASE_URL", "REDIS_URL"):
            os.environ.pop(name, None)
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        settings.DEBUG = False  # the development default keeps every query in memory
        call_command("migrate", verbosity=0)
        from llmops.simulator.testing import running_simulator

        with running_simulator() as sim:
            figures = run(size, sim)
    result = {
        "id": "M4",
        "title": "Batch pipeline",
        "command": f"{COMMAND} --size {size}",
        "figures": figures,
        "markdown": markdown(figures),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(result["markdown"])


if __name__ == "__main__":
    main()
