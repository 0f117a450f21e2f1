"""Django's SQLite backend without DEBUG's query log (llmops.backends), whose new connections
are retried when refused at once as locked and put the file in WAL mode only if it is not yet
(llmops.sqlite), and whose statements are turned into SQLite's placeholders once per text."""

from functools import lru_cache

from django.db.backends.sqlite3 import base

from llmops import sqlite
from llmops.backends import QuietDebug


class DatabaseWrapper(QuietDebug, base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        return sqlite.connect_retrying(lambda: self._new_connection(conn_params))

    def _new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        try:
            sqlite.write_ahead_log(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=CursorWrapper)


class CursorWrapper(base.SQLiteCursorWrapper):
    """Django's cursor, converting each statement's %s to SQLite's ? once per text: Django
    runs a regular expression over the whole statement on every execute, and a batch ingest's
    statements are long (2,000 rows' values: a millisecond each, hundreds per ingest)."""

    def convert_query(self, query, *, param_names=None):
        if param_names is not None:
            return super().convert_query(query, param_names=param_names)
        # A few long statements recur (a chunk's, built once each), many short ones: kept
        # apart, so that neither crowds the other out and the memory stays bounded.
        if len(query) > _SHORT:
            return _converted_long(query)
        return _converted(query)


_SHORT = 4096  # characters


def _convert(query: str) -> str:
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


_converted = lru_cache(maxsize=512)(_convert)  # at most 2 MB of statements and theirs
_converted_long = lru_cache(maxsize=8)(_convert)  # a chunk's few, a few hundred kB each
