"""The fault suite's live stacks: llmops on a real socket (tests/live/stack.py) with a simulator
of the module's own, so one test's faults, clock and bill never reach another's. In the scaled
pass (DATABASE_URL set) the server gets a fresh PostgreSQL database of its own as well, so the
faults hit the database the deployment would use."""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from llmops.simulator.testing import SimulatorHandle, running_simulator
from tests.live.stack import Llmops, running_llmops


@contextmanager
def fresh_database() -> Iterator[str | None]:
    """A new, empty PostgreSQL database on DATABASE_URL's server (dropped afterwards), or None
    on the embedded default (the stack then uses SQLite in its data directory)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield None
        return
    name = f"llmops_faults_{uuid.uuid4().hex[:12]}"
    admin = urllib.parse.urlsplit(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urllib.parse.urlsplit(url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fault_stack(sim: SimulatorHandle, data_dir: Path, **settings: str) -> Iterator[Llmops]:
    """llmops seeded against `sim`, on a database of its own; `settings` are LLMOPS_* values."""
    # Every fault test sends bursts from the one demo key: the per-key throttle would refuse
    # them before the fault under test is reached.
    settings.setdefault("LLMOPS_API_RATE", "100000/minute")
    # ...and T4 holds 45 sockets open at once on that key, past the per-caller socket cap.
    settings.setdefault("LLMOPS_WS_MAX_SOCKETS_PER_CALLER", "1000")
    with (
        fresh_database() as database_url,
        running_llmops(sim.base_url, data_dir, database_url=database_url, **settings) as stack,
    ):
        yield stack


@pytest.fixture(scope="module")
def own_sim() -> Iterator[SimulatorHandle]:
    """A simulator for this module alone (instant timings until a test configures it)."""
    with running_simulator() as handle:
        yield handle
