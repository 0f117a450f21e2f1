"""Memory around large one-off pieces of work: the garbage collector kept off what was there
before, and freed memory given back to the operating system after.

CPython frees objects, but glibc keeps the freed pages of its heap for reuse unless the top of
the heap is free. A 12 MB batch file uploaded through daphne arrives as some 1,500 chunks of
8 KB queued at once (daphne hands the whole body over before the view runs); freed, they left
daphne ~35 MB larger for good, measured on this machine. `malloc_trim` returns those pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def _trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


_malloc_trim = _trim()


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc); a no-op elsewhere. Costs a few
    milliseconds on a large heap: call it after large one-off work, not per request."""
    if _malloc_trim is not None:
        _malloc_trim(0)


@contextmanager
def collector_on_new_objects_only() -> Iterator[None]:
    """The cyclic garbage collector looks only at objects made inside the block (gc.freeze).
    A batch's ingest makes tens of thousands of objects a chunk; each time that triggered a
    full collection, it walked every object of the process too (Django, the worker's state):
    measured, a sixth of a 10,000-result ingest. Objects are still freed by their reference
    counts, and cycles made inside the block are collected as ever.

    Afterwards the objects go back to the collector, unless some were frozen before the block
    (daphne freezes its startup objects): then they stay frozen, as those were."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()
