from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from llmops.demo import demo_seed


class Command(BaseCommand):
    help = "Create or update the demo teams, providers, models, workloads, policies and budgets."

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

    def handle(self, *args, **options):
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
        if result.api_key_team:
            self.stdout.write(f"API key 'demo' (admin) is set for team {result.api_key_team}.")
