"""Opening SQLite connections to files that other processes and threads are writing."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

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


class Checkpointer:
    """Copies a file's write-ahead log into the database in a thread of its own, every
    `every` seconds, while a bulk write goes on. SQLite checkpoints on the commit that finds
    the log above its threshold (wal_autocheckpoint, 1,000 pages): a bulk write's commit of
    thousands of rows crossed it every time, and copied and synced the pages there, in its own
    thread (bench/batch_pipeline.py at 50,000 results: its commits took 3.6 of the ingest's
    21 s, 1.0 s with this). Here the copying runs beside the writer's next chunk (SQLite works
    without Python's lock), PASSIVE: it takes no lock that a reader or a writer waits for, and
    copies what no reader still needs."""

    def __init__(self, path: str, *, every: float = 0.05) -> None:
        self.path, self.every = path, every
        self.checkpoints = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            db = connect_retrying(lambda: sqlite3.connect(self.path, isolation_level=None))
        except sqlite3.Error:
            log.exception("checkpoints of %s: not opened; left to other commits", self.path)
            return
        try:
            # Once more after the stop: what the last chunk wrote is copied too.
            while True:
                self._stop.wait(self.every)
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self.checkpoints += 1
                if self._stop.is_set():
                    break
        except sqlite3.Error:
            # Not lost: the log stays, and the next commit past the threshold copies it.
            log.exception("checkpoints of %s: stopped", self.path)
        finally:
            db.close()

    def close(self) -> None:
        """After the last checkpoint (taken after this call)."""
        self._stop.set()
        self._thread.join()
