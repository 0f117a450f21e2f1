"""`manage.py simulator`: run the provider simulator in the foreground."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from llmops.simulator.server import run
from llmops.simulator.state import DEMO_CONFIG, INSTANT_CONFIG


class Command(BaseCommand):
    help = "Run the OpenAI/Anthropic provider simulator (demo timings unless told otherwise)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=getattr(settings, "LLMOPS_SIM_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=getattr(settings, "LLMOPS_SIM_PORT", 8100))
        parser.add_argument(
            "--instant",
            action="store_true",
            help="No time to first token, no pacing, batches end at once.",
        )
        parser.add_argument("--ttft-ms", type=float, help="Time to first token (default 250).")
        parser.add_argument("--tokens-per-s", type=float, help="Token rate (default 60).")
        parser.add_argument(
            "--batch-turnaround-s", type=float, help="Time a batch spends running (default 30)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = dict(INSTANT_CONFIG if options["instant"] else DEMO_CONFIG)
        for flag, key in (
            ("ttft_ms", "ttft_ms"),
            ("tokens_per_s", "tokens_per_s"),
            ("batch_turnaround_s", "batch_turnaround_s"),
        ):
            if options[flag] is not None:
                config[key] = options[flag]
        run(options["host"], options["port"], config)
