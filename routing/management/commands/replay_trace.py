"""Replay a trace through the real router and pricing on a simulated clock (routing/replay.py):
what llmops would have cost, against all-realtime and against the oracle."""

from __future__ import annotations

import json
import re
import time
from argparse import ArgumentTypeError
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_duration

from routing.replay import (
    MODES,
    ReplayError,
    Report,
    Tally,
    WhatIf,
    replay,
    usd,
    world_load,
)
from routing.router import human
from routing.trace import TraceError, trace_read

UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """600, 90s, 10m, 10min, 24h, 1.5d, or Django's forms (00:10:00, P1D)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d)?\s*", text)
    if match:
        return timedelta(seconds=float(match[1]) * UNITS[match[2] or ""])
    parsed = parse_duration(text.strip())
    if parsed is None or parsed <= timedelta(0):
        raise ArgumentTypeError(f"{text!r} is not a duration (e.g. 600, 90s, 10m, 24h, 1d)")
    return parsed


def workload_policy(text: str) -> tuple[str, str]:
    slug, sep, name = text.partition("=")
    if not sep or not slug or not name:
        raise ArgumentTypeError(f"{text!r} is not SLUG=POLICY")
    return slug, name


class Command(BaseCommand):
    help = (
        "Replay a trace (llmops/data/README.md's format) through the real router and pricing "
        "on a simulated clock, with no provider call and nothing written: cost, counterfactual "
        "(all realtime at the standard price), the oracle, the share of the oracle's savings "
        "achieved, and deadline misses. The options try a draft policy."
    )

    def add_arguments(self, parser):
        parser.add_argument("trace", metavar="FILE", help="JSON lines, gzipped or not.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--batch-turnaround",
            type=duration,
            metavar="DURATION",
            help="Every provider promises this batch turnaround and keeps it (default: each "
            "model's expected turnaround in the database; the demo's is 10 min, real providers "
            "promise 24h).",
        )
        parser.add_argument(
            "--batch-actual",
            type=duration,
            metavar="DURATION",
            help="Batches really take this, whatever was promised: late batches are cancelled "
            "and escalated, or miss deadlines.",
        )
        parser.add_argument(
            "--policy-max-wait",
            type=duration,
            metavar="DURATION",
            help="Every policy's max batch wait (how long a request may sit in the buffer).",
        )
        parser.add_argument(
            "--no-cache", action="store_true", help="Turn every policy's response cache off."
        )
        parser.add_argument(
            "--cache-ttl",
            type=duration,
            metavar="DURATION",
            help="Turn every policy's response cache on with this TTL (e.g. 1d): what a cache "
            "would save.",
        )
        parser.add_argument(
            "--no-batch", action="store_true", help="Let no policy defer to a batch."
        )
        parser.add_argument(
            "--no-flex", action="store_true", help="Let no policy serve at OpenAI's flex tier."
        )
        parser.add_argument(
            "--workload-policy",
            type=workload_policy,
            action="append",
            default=[],
            metavar="SLUG=POLICY",
            help="Route the trace's workload SLUG with the routing policy called POLICY "
            "(repeatable). Other workloads use their workload's policy, else the demo's "
            "default for their latency class.",
        )

    def handle(self, *args, **options):
        path = Path(options["trace"])
        if options["cache_ttl"] is not None and options["no_cache"]:
            raise CommandError("--cache-ttl and --no-cache contradict each other: choose one")
        what_if = WhatIf(
            batch_turnaround=options["batch_turnaround"],
            batch_actual=options["batch_actual"],
            max_wait=options["policy_max_wait"],
            no_cache=options["no_cache"],
            cache_ttl=options["cache_ttl"],
            no_batch=options["no_batch"],
            no_flex=options["no_flex"],
            workload_policies=tuple(options["workload_policy"]),
        )
        started = time.monotonic()
        try:
            report = replay(trace_read(path), world_load(what_if))
        except TraceError as exc:
            raise CommandError(f"{path}: {exc}") from None
        except ReplayError as exc:
            raise CommandError(str(exc)) from None
        seconds = time.monotonic() - started
        if not report.total.requests:
            raise CommandError(f"{path}: no requests in the trace")
        if options["json"]:
            data = {
                "trace": str(path),
                **report.as_dict(),
                "what_if": what_if.as_dict(),
                "seconds": round(seconds, 3),
            }
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self.stdout.write(text(report, path=path, seconds=seconds))


def text(report: Report, *, path: Path, seconds: float) -> str:
    total = report.total
    lines = [
        f"Replayed {path}: {total.requests:,} requests in {seconds:.1f} s (simulated "
        f"{human(timedelta(seconds=report.simulated_s))}; prices in force at "
        f"{report.prices_at:%Y-%m-%d %H:%M} UTC).",
        f"Batch turnaround: {report.turnaround_source}.",
    ]
    for name, figures in report.models.items():
        p90 = figures["observed_p90_s"]
        lines.append(
            f"  {name}: promised {_span(figures['promised_s'])}, took "
            f"{_span(figures['actual_s'])}; batch jobs {figures['batch_jobs']}, "
            f"completed {figures['completed_batches']}"
            + (f", observed p90 {_span(p90)} (with polling)" if p90 is not None else "")
        )
    header = ["workload", "requests", *MODES, "escalated", "misses"]
    header += ["cost", "counterfactual", "oracle", "ratio"]
    rows = [_row(slug, tally) for slug, tally in sorted(report.workloads.items())]
    rows.append(_row("total", total))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines.append("")
    for r in [header, *rows]:
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    lines.append("")
    for slug, tally in sorted(report.workloads.items()):
        lines.append(
            f"{slug}: {', '.join(sorted(tally.policies))}; {', '.join(sorted(tally.models))}"
        )
    ratio = "n/a (the oracle saves nothing)" if total.ratio is None else f"{total.ratio}"
    lines += [
        "",
        f"cost            ${usd(total.cost)}",
        f"counterfactual  ${usd(total.counterfactual)}  (every request realtime, standard price)",
        f"oracle          ${usd(total.oracle)}",
        f"savings         ${usd(total.savings)} of the oracle's ${usd(total.oracle_savings)}: "
        f"ratio {ratio}",
        f"deadline misses {total.deadline_misses}; escalated to realtime {total.escalated}; "
        f"missed savings {total.missed_savings}; batch jobs {report.batch_jobs} "
        f"({report.cancelled_jobs} cancelled)",
    ]
    return "\n".join(lines)


def _row(label: str, tally: Tally) -> list:
    return [
        label,
        f"{tally.requests:,}",
        *(f"{tally.modes[mode]:,}" for mode in MODES),
        f"{tally.escalated:,}",
        f"{tally.deadline_misses:,}",
        _money(tally.cost),
        _money(tally.counterfactual),
        _money(tally.oracle),
        "n/a" if tally.ratio is None else f"{tally.ratio:.4f}",
    ]


def _money(amount: Decimal) -> str:
    return f"${amount:,.4f}"


def _span(seconds: float) -> str:
    return human(timedelta(seconds=seconds))
