"""The cache of the embedded mode (one machine, no Redis): one SQLite file that every process
on the machine shares."""

from __future__ import annotations

import itertools
import os
import pickle
import sqlite3
import threading
import time
from pathlib import Path

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from llmops import sqlite

# One count for the process: Django makes a cache object per thread (per request under ASGI).
_writes = itertools.count()
_connections = threading.local()


class SQLiteCache(BaseCache):
    """A cache in one SQLite file (WAL) that every process of one machine shares: worker
    heartbeats, the configuration's version token, circuit breakers, and (in a file of its
    own) the response cache, written on the serving path. Django's file cache creates and
    renames a file per write, about a millisecond of system time here (more than the rest of
    a realtime request's database work); a row written in WAL mode costs a few dozen
    microseconds. What is lost to a power cut is cached only, so commits are not synced.
    Expired rows are dropped, and beyond MAX_ENTRIES those expiring first (never the ones
    that do not expire before every other), every CULL_EVERY writes of a process."""

    CULL_EVERY = 200

    def __init__(self, location: str, params: dict) -> None:
        super().__init__(params)
        self.path = Path(location)

    def _db(self) -> sqlite3.Connection:
        # One connection per thread and file, kept for the thread's life: Django makes a cache
        # object per thread and, under ASGI, per request.
        # Not one opened before a fork (django-q2 forks its workers): SQLite forbids that.
        if getattr(_connections, "pid", None) != os.getpid():
            _connections.pid, _connections.by_path = os.getpid(), {}
        opened = _connections.by_path
        db = opened.get(self.path)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = opened[self.path] = self._connect()
        return db

    def _connect(self) -> sqlite3.Connection:
        return sqlite.connect_retrying(self._open)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=20, isolation_level=None)
        try:
            sqlite.write_ahead_log(db)
            db.execute("PRAGMA synchronous=OFF")
            # Lookups by key: a small page cache (SQLite's default, 2 MB per connection, grew a
            # server's memory with every thread as the file grew).
            db.execute("PRAGMA cache_size=-128")
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries "
                "(key TEXT PRIMARY KEY, expires REAL, value BLOB) WITHOUT ROWID"
            )
        except BaseException:
            db.close()
            raise
        return db

    def validate_key(self, key) -> None:
        """Any key is a TEXT value here. Django's default warns of keys memcached would refuse,
        walking every key character by character on every read and write (the serving path
        reads and writes this cache several times a request); no deployment of llmops uses
        memcached."""

    def get_many(self, keys, version=None) -> dict:
        if not keys:
            return {}
        names = {self.make_and_validate_key(k, version=version): k for k in keys}
        marks = ", ".join("?" * len(names))
        rows = self._db().execute(
            f"SELECT key, value FROM entries WHERE key IN ({marks}) "  # noqa: S608 (marks only)
            "AND (expires IS NULL OR expires > ?)",
            [*names, time.time()],
        )
        return {names[key]: pickle.loads(value) for key, value in rows}  # noqa: S301 (own writes)

    def get(self, key, default=None, version=None):
        return self.get_many([key], version=version).get(key, default)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> None:
        self._write("INSERT OR REPLACE", key, value, timeout, version)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        # Like the other backends: an expired row does not stop an add.
        self._db().execute(
            "DELETE FROM entries WHERE key = ? AND expires <= ?",
            [self.make_and_validate_key(key, version=version), time.time()],
        )
        return self._write("INSERT OR IGNORE", key, value, timeout, version)

    def _write(self, verb: str, key, value, timeout, version) -> bool:
        expires = self.get_backend_timeout(timeout)
        row = [
            self.make_and_validate_key(key, version=version),
            expires,
            pickle.dumps(value, pickle.HIGHEST_PROTOCOL),
        ]
        db = self._db()
        changed = db.execute(f"{verb} INTO entries VALUES (?, ?, ?)", row).rowcount
        if next(_writes) % self.CULL_EVERY == 0:
            self._cull(db)
        return changed == 1

    def _cull(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM entries WHERE expires <= ?", [time.time()])
        db.execute(
            "DELETE FROM entries WHERE key IN (SELECT key FROM entries "
            "ORDER BY expires IS NULL, expires LIMIT max(0, (SELECT count(*) FROM entries) - ?))",
            [self._max_entries],
        )

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None) -> bool:
        return (
            self._db()
            .execute(
                "UPDATE entries SET expires = ? WHERE key = ?",
                [self.get_backend_timeout(timeout), self.make_and_validate_key(key, version)],
            )
            .rowcount
            == 1
        )

    def delete(self, key, version=None) -> bool:
        name = self.make_and_validate_key(key, version=version)
        return self._db().execute("DELETE FROM entries WHERE key = ?", [name]).rowcount == 1

    def has_key(self, key, version=None) -> bool:
        return self.get_many([key], version=version) != {}

    def clear(self) -> None:
        self._db().execute("DELETE FROM entries")
