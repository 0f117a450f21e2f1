"""Django's SQLite backend without DEBUG's query log (llmops.backends)."""

from django.db.backends.sqlite3 import base

from llmops.backends import QuietDebug


class DatabaseWrapper(QuietDebug, base.DatabaseWrapper):
    pass
