from __future__ import annotations

import io
import os

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache, caches
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from llmops import memo
from routing.keys import api_key_create
from routing.models import ApiKey, LlmModel, Team, Workload
from tests.demo import DEMO_KEY, Demo, mid_next_month


def pytest_configure(config) -> None:
    from django.conf import settings

    # In-process tests run the serving endpoints' database work in the request's own thread:
    # the test's transaction lives there, and a pool thread (llmops/dbthreads.py) could
    # neither see its rows nor write beside it. The live tests' daphne uses the pool.
    settings.LLMOPS_DB_THREADS = 0


def pytest_collection_modifyitems(config, items) -> None:
    # tests/faults is the fault suite: `make faults` runs it (tests/faults/run.py), `make test`
    # deselects it through the "not faults" default in pyproject.toml.
    for item in items:
        if "/tests/faults/" in str(item.path):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch) -> None:
    # Both SDKs honour proxy variables and read OPENAI_*/ANTHROPIC_* settings from
    # the environment; a developer's shell must not change what a test talks to.
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # Tests steer the simulator's clock: a worker step must not wait in real time for a
    # cancel the test confirms by moving that clock (tests of the wait turn it on).
    monkeypatch.setattr(settings, "LLMOPS_BATCH_CANCEL_WAIT_SECONDS", 0)
    cache.clear()
    caches["throttle"].clear()
    caches["responses"].clear()
    memo.reset()  # rows memoized by a previous test may have been rolled back


@pytest.fixture(scope="session")
def figures():
    """Where a fault or security test writes the figures RELIABILITY.md shows (tests/figures.py)."""
    from tests.figures import from_environment

    return from_environment()


@pytest.fixture(scope="session")
def simulator_server():
    """One real simulator on a real socket for the whole session (instant timings)."""
    from llmops.simulator.testing import running_simulator

    with running_simulator() as handle:
        yield handle


@pytest.fixture
def sim(simulator_server):
    """The session's simulator, reset: default config, no faults, usage and clock at zero."""
    simulator_server.reset()
    return simulator_server


@pytest.fixture
def team(db) -> Team:
    return Team.objects.create(slug="acme", name="Acme")


@pytest.fixture
def other_team(db) -> Team:
    return Team.objects.create(slug="globex", name="Globex")


@pytest.fixture
def api_key(team) -> tuple[ApiKey, str]:
    return api_key_create(team=team, name="ci", role=ApiKey.Role.ADMIN)


@pytest.fixture
def admin_client(client):
    """A signed-in superuser, "root" (pytest-django's own is "admin")."""
    user = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    return client


@pytest.fixture
def client_for():
    """An API client authenticated with a raw key."""

    def make(raw_key: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make


@pytest.fixture
def demo(db, sim) -> Demo:
    """The seeded demo world (tests/demo.py), its providers pointing at the session's simulator
    and acme's admin-role key 'demo' set to DEMO_KEY."""
    before = timezone.now()
    call_command(
        "seed_demo",
        "--simulator-url",
        sim.base_url,
        "--api-key",
        DEMO_KEY,
        stdout=io.StringIO(),
    )
    return Demo(
        acme=Team.objects.get(slug="acme"),
        globex=Team.objects.get(slug="globex"),
        models={m.model_id: m for m in LlmModel.objects.select_related("provider")},
        workloads={w.slug: w for w in Workload.objects.select_related("policy", "team")},
        at=mid_next_month(before),
        synced_at=before,
    )


@pytest.fixture
def api(demo, client_for) -> APIClient:
    """An API client with the demo key (acme, admin role)."""
    return client_for(demo.key)


@pytest.fixture
def ledger_emptied_after():
    """For tests that commit ledger rows (transaction=True): the teardown flush would be
    refused by the append-only triggers, so they are lifted just long enough to delete them."""
    yield
    from django.db import connection

    from billing.migrations import _append_only

    with connection.schema_editor() as editor:
        _append_only.backward(None, editor)
        connection.cursor().execute("DELETE FROM billing_ledgerentry")
        _append_only.forward(None, editor)
