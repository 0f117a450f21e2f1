"""Django's PostgreSQL backend without DEBUG's query log (llmops.backends)."""

from django.db.backends.postgresql import base

from llmops.backends import QuietDebug


class DatabaseWrapper(QuietDebug, base.DatabaseWrapper):
    pass
