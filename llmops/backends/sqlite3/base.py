"""Django's SQLite backend without DEBUG's query log (llmops.backends), whose new connections
are retried when refused at once as locked and put the file in WAL mode only if it is not yet
(llmops.sqlite)."""

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
