"""Opening SQLite connections to files that other processes and threads are writing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

# A refused connection is tried again after 5 ms, doubling: about 0.6 s in all.
_FIRST_PAUSE, _LAST_PAUSE = 0.005, 0.4


def connect_retrying(connect: Callable[[], sqlite3.Connection]) -> sqlite3.Connection:
    """`connect()` (which opens a connection and sets it up), tried again for a moment when
    SQLite refuses it at once as locked. A connection opened while others write the file was
    once refused "database is locked" on its first statement without waiting out its busy
    timeout (the first of 85 concurrent streams on a fresh server, tests/faults/
    test_streams.py: SQLite answers a reader that finds the write-ahead log's index being
    rebuilt that way), and that request answered 500. Any other error is raised at once."""
    pause = _FIRST_PAUSE
    while True:
        try:
            return connect()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or pause > _LAST_PAUSE:
                raise
            time.sleep(pause)
            pause *= 2


def write_ahead_log(db: sqlite3.Connection) -> None:
    """The file in WAL mode. The mode is the file's, kept across connections: asked for only
    when it is not set yet, since asking takes a lock of its own."""
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode=WAL")
