"""Django's SQLite and PostgreSQL backends, with DEBUG's query log only when asked for.

With DEBUG on (`make run`), Django records every statement in connection.queries and, on
SQLite, runs one more query per statement to quote its parameters for that record: on the
serving path a tenth of what a request cost, for a log nothing reads unless someone asks.
LLMOPS_LOG_SQL turns it back on; tests that count statements (CaptureQueriesContext) force
it per connection as before."""

from __future__ import annotations

from django.conf import settings


class QuietDebug:
    @property
    def queries_logged(self) -> bool:
        return self.force_debug_cursor or settings.LLMOPS_LOG_SQL
