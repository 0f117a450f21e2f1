from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from llmops.secret_rotation import RotationConflict, UndecryptableSecrets, secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider API key and webhook secret under the first key of "
        "LLMOPS_ENCRYPTION_KEYS (run after prepending a new key; then the old one can go). "
        "All or nothing; a second run changes nothing."
    )

    def handle(self, *args, **options):
        try:
            report = secrets_rotate()
        except UndecryptableSecrets as exc:
            raise CommandError(
                f"Nothing was changed: {len(exc.rows)} stored secret(s) match no key in "
                f"LLMOPS_ENCRYPTION_KEYS: {exc}. Add the key they were encrypted with to "
                "LLMOPS_ENCRYPTION_KEYS (after the first) and run again, or set a new value "
                "in the admin."
            ) from None
        except RotationConflict as exc:
            raise CommandError(f"Nothing was changed: {exc}. Run again.") from None
        self.stdout.write(
            f"Re-encrypted {report.reencrypted} secret(s) under the first key of "
            f"LLMOPS_ENCRYPTION_KEYS; {report.current} already used it."
        )
        if len(settings.ENCRYPTION_KEYS) > 1:
            self.stdout.write(
                "Every stored secret now uses the first key: the others can be removed from "
                "LLMOPS_ENCRYPTION_KEYS."
            )
