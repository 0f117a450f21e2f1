"""The pieces under the serving hot path: the response cache's SQLite file (llmops/cache.py),
single-row writes in SQL (llmops/rows.py), DEBUG without its query log (llmops/backends) and
the frozen start-up heap (llmops/asgi.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import time
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from llmops import rows, sqlite
from llmops.cache import SQLiteCache
from routing.models import Request, RequestAttempt


def sqlite_cache(path, **options) -> SQLiteCache:
    return SQLiteCache(str(path), {"OPTIONS": options})


def test_the_sqlite_cache_keeps_reads_expires_and_deletes_entries(tmp_path):
    cache = sqlite_cache(tmp_path / "c.sqlite3")
    answer = {"text": "hello", "usage": {"output_tokens": 2}, "cost": Decimal("0.25")}
    cache.set("a", answer, timeout=60)

    assert cache.get("a") == answer
    assert cache.get_many(["a", "missing"]) == {"a": answer}
    assert cache.add("a", "other") is False and cache.get("a") == answer
    assert cache.add("b", 1) is True and cache.get("b") == 1
    assert cache.delete("b") is True and cache.get("b", "gone") == "gone"

    cache.set("short", 1, timeout=0.05)
    time.sleep(0.1)
    assert cache.get("short") is None
    assert cache.add("short", 2) is True and cache.get("short") == 2  # expired: add wins

    cache.clear()
    assert cache.get("a") is None


def test_another_instance_and_another_process_see_the_same_entries(tmp_path):
    path = tmp_path / "shared.sqlite3"
    sqlite_cache(path).set("k", {"v": 1}, timeout=60)
    assert sqlite_cache(path).get("k") == {"v": 1}  # another object, as Django makes per request

    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_write_from_child, args=(str(path),))
    child.start()
    child.join(20)
    assert child.exitcode == 0
    assert sqlite_cache(path).get("from-child") == "written after a fork"


def _write_from_child(path: str) -> None:
    # The parent's connection came across the fork: the cache must open its own.
    SQLiteCache(path, {}).set("from-child", "written after a fork", timeout=60)


def test_the_sqlite_cache_culls_beyond_max_entries_every_so_many_writes(tmp_path):
    cache = sqlite_cache(tmp_path / "cull.sqlite3", MAX_ENTRIES=50)
    cache.set("token", "kept", timeout=None)  # never expires: culled last
    for i in range(SQLiteCache.CULL_EVERY * 2):
        cache.set(f"k{i}", i, timeout=60 + i)  # later keys expire later
    count = cache._db().execute("SELECT count(*) FROM entries").fetchone()[0]
    # Culled (400 writes left fewer than 400 rows), but not on every write (which would keep
    # it at MAX_ENTRIES).
    assert 50 < count < SQLiteCache.CULL_EVERY * 2
    assert cache.get(f"k{SQLiteCache.CULL_EVERY * 2 - 1}") is not None  # the newest stay
    assert cache.get("k0") is None  # the first to expire went
    assert cache.get("token") == "kept"


class _Refused:
    """A connection whose first statement reading the file SQLite refused: "database is
    locked" at once (statements that only set the connection up read nothing)."""

    def __init__(self, db, message: str, closed: list) -> None:
        self.db, self.message, self.closed = db, message, closed

    def execute(self, sql, *args):
        if sql.startswith("PRAGMA journal_mode"):
            raise sqlite3.OperationalError(self.message)
        return self.db.execute(sql, *args)

    def close(self) -> None:
        self.closed.append(self.message)
        self.db.close()

    def __getattr__(self, name):  # what Django does to a new connection before its first query
        return getattr(self.db, name)


def refusing(monkeypatch, times: int, message: str) -> list:
    """The cache's first `times` connections refused with `message`: the refused ones, closed."""
    real, closed = sqlite3.connect, []

    def connect(*args, **kwargs):
        db = real(*args, **kwargs)
        return db if len(closed) >= times else _Refused(db, message, closed)

    monkeypatch.setattr("llmops.cache.sqlite3.connect", connect)
    return closed


def test_a_new_connection_refused_as_locked_is_retried_not_failed(tmp_path, monkeypatch):
    """Seen once on a fresh server: the first of 85 concurrent streams found the response
    cache's file locked as its thread connected, and answered 500."""
    closed = refusing(monkeypatch, 2, "database is locked")
    cache = sqlite_cache(tmp_path / "locked.sqlite3")

    cache.set("k", "v", timeout=60)

    assert cache.get("k") == "v"
    assert closed == ["database is locked"] * 2
    assert cache._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_database_connection_refused_as_locked_is_retried_not_failed(
    tmp_path, monkeypatch, django_db_blocker
):
    """Django's connections (llmops.backends.sqlite3) as the cache's: retried, in WAL mode.
    A connection of the backend to a file of its own, whichever database the suite runs on."""
    from llmops.backends.sqlite3.base import DatabaseWrapper

    real, closed = sqlite3.dbapi2.connect, []

    def connect(*args, **kwargs):
        db = real(*args, **kwargs)
        return db if len(closed) >= 2 else _Refused(db, "database is locked", closed)

    monkeypatch.setattr("django.db.backends.sqlite3.base.Database.connect", connect)
    probe = DatabaseWrapper(
        {
            "ENGINE": "llmops.backends.sqlite3",
            "NAME": str(tmp_path / "probe.sqlite3"),
            "OPTIONS": {"init_command": "PRAGMA synchronous=NORMAL;"},
            "TIME_ZONE": None,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "AUTOCOMMIT": True,
            "ATOMIC_REQUESTS": False,
            "TEST": {},
            **dict.fromkeys(("USER", "PASSWORD", "HOST", "PORT"), ""),
        },
        alias="probe",
    )
    # Not the test database: a file of the test's own, which pytest-django leaves alone.
    with django_db_blocker.unblock():
        try:
            with probe.cursor() as cursor:
                cursor.execute("PRAGMA journal_mode")
                assert cursor.fetchone()[0] == "wal"
                cursor.execute("CREATE TABLE t (x)")
        finally:
            probe.close()
    assert closed == ["database is locked"] * 2


def test_any_other_refusal_of_a_new_connection_is_raised_at_once(tmp_path, monkeypatch):
    closed = refusing(monkeypatch, 5, "disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        sqlite_cache(tmp_path / "broken.sqlite3").get("k")
    assert closed == ["disk I/O error"]


@pytest.mark.django_db
def test_a_thread_keeps_one_cache_object_whatever_async_context_it_runs_in():
    # The serving path's database units run each under its request's context: Django's own
    # per-context cache objects were built anew, settings parsed, in every unit.
    import contextvars
    import threading

    from django.core.cache import caches

    def two_contexts(out: list) -> None:
        for _ in range(2):
            out.append(contextvars.copy_context().run(lambda: caches["default"]))

    here, there = [], []
    two_contexts(here)
    thread = threading.Thread(target=two_contexts, args=(there,))
    thread.start()
    thread.join()

    assert here[0] is here[1] and there[0] is there[1]
    assert here[0] is not there[0]  # still one per thread, as before ASGI


def test_rows_writes_what_the_orm_would(demo):
    request = Request(
        team=demo.acme,
        workload=demo.workloads["product-search"],
        params={"messages": [{"role": "user", "content": "héllo"}]},
        status=Request.Status.RUNNING,
    )
    assert rows.insert(request) is True
    attempt = RequestAttempt(
        request=request, position=0, model=demo.models["gpt-4o-mini"], outcome="ok"
    )
    rows.insert(attempt)
    assert attempt.pk is not None  # the database's key, RETURNed

    request.output, request.status = "answer", Request.Status.COMPLETED
    assert rows.update(request) == 1

    stored = Request.objects.get(pk=request.pk)
    assert stored.params == request.params and stored.output == "answer"
    assert stored.status == Request.Status.COMPLETED
    assert RequestAttempt.objects.get(pk=attempt.pk).request_id == request.pk
    # A row already there under a unique value: nothing written, no IntegrityError.
    again = Request(pk=request.pk, team=demo.acme, workload=request.workload)
    assert rows.insert(again, unless_exists="id") is False


@pytest.mark.django_db
def test_update_many_writes_each_row_with_its_own_values_and_the_shared_ones(demo):
    workload = demo.workloads["product-search"]
    made = [
        Request(team=demo.acme, workload=workload, params={"n": n}, status="running")
        for n in range(3)
    ]
    for request in made:
        rows.insert(request)
    now = timezone.now()
    # JSON written by orjson where it can (keys that are not text and integers past 64 bits
    # by json.dumps): the same values read back, and found by the database's JSON lookups.
    answers = [{"text": "héllo ☃", "n": 2**70}, {1: "one", "f": 0.1}, {"deep": [[{"a": None}]]}]
    for n, request in enumerate(made):
        request.output, request.usage = f"answer {n}", {"output_tokens": n}
        request.answer = answers[n]
        request.status, request.completed_at = Request.Status.COMPLETED, now
        request.model = demo.models["gpt-4o-mini"]
    fields = ("output", "usage", "answer", "status", "completed_at", "model")
    rows.update_many(made, fields)
    for n, request in enumerate(made):
        stored = Request.objects.get(pk=request.pk)
        assert (stored.output, stored.usage) == (f"answer {n}", {"output_tokens": n})
        assert stored.answer == json.loads(json.dumps(answers[n]))
        assert Request.objects.filter(pk=request.pk, usage__output_tokens=n).exists()
        assert stored.status == Request.Status.COMPLETED and stored.completed_at == now
        assert stored.model_id == demo.models["gpt-4o-mini"].pk
        assert stored.params == {"n": n}  # not a field it was asked to write


@pytest.mark.django_db
def test_debug_keeps_no_query_log_unless_asked(demo):
    with override_settings(DEBUG=True, LLMOPS_LOG_SQL=False):
        assert connection.queries_logged is False
        with CaptureQueriesContext(connection) as captured:  # tests still count statements
            Request.objects.count()
        assert len(captured) == 1
    with override_settings(DEBUG=True, LLMOPS_LOG_SQL=True):
        assert connection.queries_logged is True


@pytest.mark.django_db
def test_rows_reads_a_row_as_the_orm_does(demo):
    from routing.models import ApiKey

    orm = ApiKey.objects.get(team=demo.acme, name="demo")
    fast = rows.get(ApiKey, "key_hash", orm.key_hash)

    for field in ApiKey._meta.concrete_fields:
        assert getattr(fast, field.attname) == getattr(orm, field.attname), field.name
    assert fast.pk == orm.pk and not fast._state.adding
    assert rows.get(ApiKey, "key_hash", "0" * 64) is None


@pytest.mark.django_db
def test_rows_selects_by_a_foreign_key_as_the_orm_does(api, sim):
    """A request's attempts (a UUID foreign key; integers, text and times read back): every
    row and every value as the ORM reads them."""
    sim.fault(provider="openai", status=500, count=1)  # two attempts: a failure, an answer
    response = api.post(
        "/api/v1/requests",
        {"workload": "product-search", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    request = Request.objects.get(pk=response.json()["id"])

    orm = list(RequestAttempt.objects.filter(request=request).order_by("pk"))
    fast = sorted(rows.select(RequestAttempt, "request", request.pk), key=lambda a: a.pk)

    assert len(orm) == 2 and len(fast) == 2
    for a, b in zip(orm, fast, strict=True):
        for field in RequestAttempt._meta.concrete_fields:
            assert getattr(b, field.attname) == getattr(a, field.attname), field.name
    assert rows.select(RequestAttempt, "request", uuid.uuid4()) == []


@pytest.mark.django_db
def test_rows_selects_many_rows_with_only_some_fields_as_the_orm_does(api, sim):
    """select_in against filter(by__in=..., **equal).only(...): the same rows, the same values
    loaded, the same fields deferred (and read from the database when touched); values_in
    gives the ids alone."""
    ids = []
    for n in range(3):
        response = api.post(
            "/api/v1/requests",
            {"workload": "product-search", "messages": [{"role": "user", "content": f"hi {n}"}]},
            format="json",
        )
        assert response.status_code == 200, response.content
        ids.append(uuid.UUID(response.json()["id"]))
    names = ("team", "workload", "params", "status", "created_at")
    wanted = [*ids[:2], uuid.uuid4()]  # one id that matches no row

    orm = {r.pk: r for r in Request.objects.filter(pk__in=wanted).only(*names)}
    fast = {r.pk: r for r in rows.select_in(Request, names, "id", wanted)}

    assert set(fast) == set(orm) == set(ids[:2])
    for pk, request in fast.items():
        assert request.get_deferred_fields() == orm[pk].get_deferred_fields()
        for name in ("id", "team_id", "workload_id", "params", "status", "created_at"):
            assert getattr(request, name) == getattr(orm[pk], name), name
        assert not request._state.adding and request._state.db == "default"
        assert request.output == Request.objects.get(pk=pk).output  # a deferred field, loaded
    # A condition besides the list: none of them is failed.
    assert rows.select_in(Request, names, "id", ids, status=Request.Status.FAILED) == []
    attempts = rows.values_in(RequestAttempt, ("request",), "request", ids)
    assert sorted(r for _, r in attempts) == sorted(
        RequestAttempt.objects.filter(request__in=ids).values_list("request_id", flat=True)
    )
    # UUIDs read as uuid.UUID's own: equal, alike in every form, hashed alike.
    for pk, request in fast.items():
        assert type(request.pk) is uuid.UUID and request.pk.int == orm[pk].pk.int
        assert (str(request.pk), request.pk.hex, hash(request.pk)) == (
            str(orm[pk].pk),
            orm[pk].pk.hex,
            hash(orm[pk].pk),
        )
    # values_in with a condition besides the list.
    assert rows.values_in(RequestAttempt, ("request",), "request", ids, outcome="no such") == []


@pytest.mark.django_db
def test_rows_reads_json_columns_as_the_orm_does(api, sim):
    """JSON columns read through fastjson (orjson where it reads as json.loads does): a value
    orjson would read differently (an integer past 64 bits), text with a run of digits and
    non-ASCII come back as the ORM gives them."""
    response = api.post(
        "/api/v1/requests",
        {"workload": "product-search", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    pk = uuid.UUID(response.json()["id"])
    odd = {"n": 2**70, "f": 0.1, "s": "é 12345678901234567890", "nested": [{"a": None}]}
    Request.objects.filter(pk=pk).update(metadata=odd, answer=[1.5, {"b": True}])
    names = ("metadata", "usage", "answer", "params")

    orm = Request.objects.only(*names).get(pk=pk)
    (fast,) = rows.select_in(Request, names, "id", [pk])

    for name in names:
        assert getattr(fast, name) == getattr(orm, name), name
    assert fast.metadata == odd and type(fast.metadata["n"]) is int


@pytest.mark.django_db
def test_rows_builds_instances_through_from_db_when_something_listens(demo):
    """The shortcut past Model.__init__ is taken only where it leaves what __init__ would: for
    a model with a post_init receiver, instances are built by from_db and the receiver runs."""
    from django.db.models.signals import post_init

    from routing.models import ApiKey

    key_hash = ApiKey.objects.get(team=demo.acme, name="demo").key_hash
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    assert rows._plain(ApiKey)
    post_init.connect(receiver, sender=ApiKey)
    rows._plain.cache_clear()
    try:
        assert not rows._plain(ApiKey)
        key = rows.get(ApiKey, "key_hash", key_hash)
    finally:
        post_init.disconnect(receiver, sender=ApiKey)
        rows._plain.cache_clear()
    assert seen == [key] and seen[0] is key
    assert rows._plain(ApiKey)


def test_the_asgi_application_freezes_its_start_up_heap(tmp_path):
    """What the server imports stays out of the cycle collector's full collections, whose walk
    of it stalled every stream (M3)."""
    import os
    import subprocess
    import sys

    probe = (
        "import gc, json, llmops.asgi; "
        "print(json.dumps([gc.get_freeze_count(), len(gc.get_objects(2))]))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmops.settings",
        "LLMOPS_DATA_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    ).stdout
    frozen, oldest = json.loads(out.splitlines()[-1])
    assert frozen > 100_000  # the frameworks and SDKs, frozen
    assert oldest < frozen / 10  # and not left in the generation a full collection walks


@pytest.mark.django_db
def test_a_bulk_write_has_a_large_page_cache_and_gives_it_back(settings):
    """llmops.rows.bulk_page_cache: the ingest's SQLite connection caches
    LLMOPS_SQLITE_BULK_CACHE_KIB while it runs, LLMOPS_SQLITE_CACHE_KIB after."""

    if connection.vendor != "sqlite":  # PostgreSQL's buffers are the server's
        with rows.bulk_page_cache():
            assert Request.objects.count() >= 0
        return

    def cache_kib() -> int:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size")
            return -cursor.fetchone()[0]

    settings.LLMOPS_SQLITE_BULK_CACHE_KIB = 8192
    assert cache_kib() == settings.LLMOPS_SQLITE_CACHE_KIB
    with rows.bulk_page_cache():
        assert cache_kib() == 8192
    assert cache_kib() == settings.LLMOPS_SQLITE_CACHE_KIB
    settings.LLMOPS_SQLITE_BULK_CACHE_KIB = 0  # off: the cache is left as it is
    with rows.bulk_page_cache():
        assert cache_kib() == settings.LLMOPS_SQLITE_CACHE_KIB


def test_the_collector_skips_older_objects_only_inside_the_block():
    import gc

    from llmops import memory

    # A clean start: a test that imported llmops.asgi froze the heap (as daphne does).
    frozen_by_others = gc.get_freeze_count()
    gc.unfreeze()
    try:
        older = [[] for _ in range(10)]
        with memory.collector_on_new_objects_only():
            assert gc.get_freeze_count() >= len(older)
            newer = [[] for _ in range(10)]
            assert gc.is_tracked(newer[0])
        assert gc.get_freeze_count() == 0
        # Objects frozen before (daphne's start-up heap) stay frozen.
        gc.freeze()
        frozen = gc.get_freeze_count()
        with memory.collector_on_new_objects_only():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
        if frozen_by_others:
            gc.freeze()


def test_a_checkpointer_copies_the_log_into_the_file_while_the_writer_does_not(tmp_path):
    """llmops.sqlite.Checkpointer: a writer whose commits do not checkpoint
    (wal_autocheckpoint=0, as in rows.checkpoints_aside) leaves its pages in the write-ahead
    log; the checkpointer's thread copies them into the database file."""
    path = tmp_path / "bulk.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (x BLOB)")
    written = 0
    checkpointer = sqlite.Checkpointer(str(path), every=0.01)
    for _ in range(20):
        db.execute("BEGIN")
        db.executemany("INSERT INTO t VALUES (?)", [(os.urandom(1000),) for _ in range(100)])
        db.execute("COMMIT")
        written += 100_000
    checkpointer.close()
    assert checkpointer.checkpoints >= 1
    # In the database file, not only in the log (without a checkpoint the file stays at its
    # first pages; pages hold the rows less a little, so not all of `written`).
    assert path.stat().st_size > written // 2
    busy, logged, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert (busy, copied) == (0, logged)  # nothing was left to copy
    db.close()


def test_a_checkpointer_that_cannot_open_its_file_leaves_the_checkpoints_to_commits(
    tmp_path, caplog
):
    checkpointer = sqlite.Checkpointer(str(tmp_path / "missing" / "db.sqlite3"))
    checkpointer.close()
    assert checkpointer.checkpoints == 0
    assert "not opened" in caplog.text


@pytest.mark.django_db
def test_a_bulk_write_leaves_checkpoints_to_the_checkpointer_and_gives_them_back():
    """llmops.rows.checkpoints_aside: on a SQLite file in WAL mode (the test database is one)
    the connection's commits do not checkpoint while the block runs, and do after it."""
    if connection.vendor != "sqlite":  # PostgreSQL checkpoints in the server
        with rows.checkpoints_aside():
            assert Request.objects.count() >= 0
        return

    def threshold() -> int:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            return cursor.fetchone()[0]

    before = threshold()
    assert before > 0
    with rows.checkpoints_aside():
        assert threshold() == 0
    assert threshold() == before


def test_sqlite_statements_are_converted_as_django_converts_them_once_per_text():
    from django.db.backends.sqlite3.base import SQLiteCursorWrapper

    from llmops.backends.sqlite3 import base

    ours = sqlite3.connect(":memory:").cursor(factory=base.CursorWrapper)
    theirs = sqlite3.connect(":memory:").cursor(factory=SQLiteCursorWrapper)
    long_in = "SELECT 1 WHERE x IN (" + ", ".join(["%s"] * 3000) + ")"
    for query in (
        "SELECT %s, '%%s', %s",
        "UPDATE t SET a = %s WHERE b LIKE '50%%' AND c = %s",
        long_in,
    ):
        assert ours.convert_query(query) == theirs.convert_query(query)
    # Named parameters go Django's way.
    named = ours.convert_query("SELECT %(a)s", param_names=["a"])
    assert named == theirs.convert_query("SELECT %(a)s", param_names=["a"]) == "SELECT :a"
    hits = base._converted_long.cache_info().hits
    ours.convert_query(long_in)
    assert base._converted_long.cache_info().hits == hits + 1  # converted once, then kept


@pytest.mark.django_db
def test_statements_run_through_the_converting_cursor(demo):
    from llmops.backends.sqlite3.base import CursorWrapper

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's cursor")
    with connection.cursor() as cursor:
        assert type(cursor.cursor) is CursorWrapper
        cursor.execute("SELECT %s || '%%', %s", ["50", 2])
        assert cursor.fetchone() == ("50%", 2)
