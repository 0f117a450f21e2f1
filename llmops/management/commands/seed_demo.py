from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from llmops import history
from llmops.demo import demo_seed
from llmops.simulator.testing import SimulatorError


class Command(BaseCommand):
    help = (
        "Create whatever is missing of the demo teams, providers, models, prices, policies, "
        "workloads and budgets; rows that exist are left as they are (--api-key and "
        "--admin-password reset what they name)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--api-key",
            metavar="SECRET",
            help="Create (or reset) the team's admin-role API key 'demo' with exactly this secret.",
        )
        parser.add_argument(
            "--team", default="acme", help="Team that gets the --api-key (default: acme)."
        )
        parser.add_argument(
            "--admin-password",
            help="Set the local superuser 'admin' password (default: leave it as it is).",
        )
        parser.add_argument(
            "--simulator-url",
            default=settings.LLMOPS_SIMULATOR_URL,
            help="Where the demo providers point (default: LLMOPS_SIMULATOR_URL).",
        )
        parser.add_argument(
            "--history-days",
            type=int,
            default=0,
            metavar="N",
            help="Also replay N days of demo history through the simulator at --simulator-url, "
            "which must be running (once: nothing happens if a history exists). Stop the "
            "worker cluster meanwhile, or its tick flushes the history's batches on today's "
            f"clock. `make run` does this on its first run ({history.DEFAULT_DAYS} days).",
        )
        parser.add_argument(
            "--history-per-day",
            type=int,
            default=history.DEFAULT_PER_DAY,
            metavar="N",
            help=f"About N requests a day of history (default: {history.DEFAULT_PER_DAY}).",
        )

    def handle(self, *args, **options):
        if options["history_days"] < 0 or options["history_per_day"] < 1:
            raise CommandError("--history-days must be >= 0 and --history-per-day >= 1")
        try:
            result = demo_seed(
                simulator_url=options["simulator_url"],
                admin_password=options["admin_password"],
                api_key=options["api_key"],
                api_key_team=options["team"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
        if not result.admin_can_log_in:
            self.stdout.write(
                f"The superuser '{result.admin_username}' has no password yet: "
                f"python manage.py changepassword {result.admin_username}"
            )
        for slug, base_url in result.providers_kept:
            self.stdout.write(
                f"Provider {slug} points at {base_url}, not at the simulator at "
                f"{options['simulator_url'].rstrip('/')}: it was changed since the seed wrote "
                "it, so it is left as it is."
            )
        if result.api_key_team:
            self.stdout.write(f"API key 'demo' (admin) is set for team {result.api_key_team}.")
        if options["history_days"]:
            self._history(options)

    def _history(self, options) -> None:
        try:
            report = history.history_replay(
                simulator_url=options["simulator_url"],
                days=options["history_days"],
                per_day=options["history_per_day"],
            )
        except (ValueError, OSError, SimulatorError) as exc:
            # OSError, SimulatorError: nothing (or not the simulator) answers at that URL.
            raise CommandError(f"demo history: {exc}") from exc
        if report.replayed:
            self.stdout.write(f"Demo history: {report.summary()}, in {report.seconds:.0f} s.")
        else:
            self.stdout.write(
                f"Demo history: already in place ({report.requests} requests over "
                f"{report.days} days); nothing replayed."
            )
