"""The file cache of the embedded mode (one machine, no Redis)."""

from __future__ import annotations

import itertools

from django.core.cache.backends.filebased import FileBasedCache

# One count for the process: Django makes a cache object per thread.
_writes = itertools.count()


class FileCache(FileBasedCache):
    """Django's file cache, counting its files only every CULL_EVERY writes of a process.
    Django's lists the whole directory on every write to decide whether to cull, which was a
    third of what storing a response cost a realtime request. Between two counts a process can
    exceed MAX_ENTRIES by at most CULL_EVERY files."""

    CULL_EVERY = 200

    def _cull(self) -> None:
        if next(_writes) % self.CULL_EVERY == 0:
            super()._cull()
