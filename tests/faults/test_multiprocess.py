"""MP: two daphne processes and two django-q2 worker clusters on one PostgreSQL database and one
Redis, as a scaled-out deployment runs (README "Scaling out").

What it proves:
- Websocket notifications cross processes. Both daphne processes run with the catch-up read
  of /ws/requests/ turned off (LLMOPS_WS_RESYNC_SECONDS of an hour), so every push a socket
  gets came through the Redis channel layer: a socket on daphne A hears of requests submitted
  through daphne B, of a stream served on B's /ws/stream/, and of the batch results the worker
  clusters record; a socket on B subscribed by id hears of those results too. (A batch job has
  no websocket event of its own: its page polls the API; its requests' pushes are the news.
  The flush's queued → running change is one UPDATE that sends no group message, so it reaches
  subscribers only by the catch-up read: ws_flushed_running_pushed_on_a records what A heard.)
- Batches complete once, with no duplicate work, while both clusters take part: 60 deferred
  requests on three workloads and both providers become 12 provider batches of 5 (the
  providers' batch limit is lowered to 5, an admin setting), which the clusters flush, submit,
  poll and ingest through the tick schedule their own schedulers fire (every 5 s instead of
  every minute: an operator's edit of the schedule, so the test waits seconds, not minutes).
  On top, the tick is delivered four times at once (as a redelivered message or an overlapping
  schedule would): concurrent flushes and several advance tasks per job race across the four
  worker processes, and the conditional-UPDATE claims must let one in. Afterwards every
  request has one batch item and one ledger entry, every job one provider batch (and, for
  OpenAI, one input file) at the simulator, no job failed a step, the simulator billed each
  request once, and both clusters' logs show tasks they ran.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections import Counter, defaultdict
from contextlib import ExitStack
from datetime import datetime

import anthropic
import openai
import pytest

from llmops.simulator.state import INSTANT_CONFIG
from llmops.simulator.testing import running_simulator
from tests.faults.cluster import worker_cluster
from tests.faults.conftest import fresh_database
from tests.live.stack import Llmops, running_llmops, serving

pytestmark = [pytest.mark.scaled, pytest.mark.timeout(420)]

# workload -> (provider kind, requests); multiples of BATCH_SIZE, so every group fills whole
# batches and nothing waits for the policy's maximum batch wait (5 min and 1 h in the demo).
# ticket-summaries and product-descriptions share a buffer group (acme, claude-sonnet-4-6,
# scheduled lane), so their requests mix in the same jobs.
WORKLOADS = {
    "review-moderation": ("openai", 20),
    "ticket-summaries": ("anthropic", 20),
    "product-descriptions": ("anthropic", 20),
}
REQUESTS = sum(n for _, n in WORKLOADS.values())
BATCH_SIZE = 5
JOBS = REQUESTS // BATCH_SIZE
TICK_BURST = 4
COMPLETION_TIMEOUT_S = 150
PUSH_TIMEOUT_S = 30
# Short but not instant: a job is polled at least once after its submit, by whichever cluster
# the next tick lands on, so one job's lifecycle can move between clusters.
SIM_CONFIG = {
    **INSTANT_CONFIG,
    "batch_validating_s": 1,
    "batch_turnaround_s": 3,
    "batch_finalizing_s": 1,
}


@pytest.fixture(autouse=True)
def _scaled_services():
    # Selected without the servers, this must fail, not skip: a silent skip would let the
    # scaled pass report a multi-process guarantee nobody measured.
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")) or not os.environ.get("REDIS_URL"):
        pytest.fail(
            "the multi-process test needs PostgreSQL and Redis: set DATABASE_URL=postgres://… "
            'and REDIS_URL=redis://… (`eval "$(.ci/scaled-services)"`, or tests/faults/run.py)'
        )


class Listener:
    """Every message a /ws/requests/ socket receives, read by a thread while the test works."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.messages: list[dict] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                with self._changed:
                    self.messages.append(json.loads(raw))
                    self._changed.notify_all()
        except Exception:  # closed at the end of the test  # noqa: S110
            pass

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def wait(self, predicate, timeout: float) -> bool:
        """Whether `predicate(messages)` became true within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def statuses(self) -> dict[str, set[str]]:
        """Request id → every status pushed for it."""
        seen = defaultdict(set)
        with self._changed:
            for message in self.messages:
                if message["type"] == "status":
                    seen[message["request_id"]].add(message["status"])
        return seen

    def completed(self, ids) -> set[str]:
        return {i for i, s in self.statuses().items() if "completed" in s} & set(ids)


def configure(llmops: Llmops) -> None:
    """Providers take at most BATCH_SIZE requests per batch; the tick fires every 5 s."""
    llmops.shell(
        f"""
from django.utils import timezone
from django_q.models import Schedule
from routing.models import Provider
for provider in Provider.objects.all():
    provider.batch_max_requests = {BATCH_SIZE}
    provider.save(update_fields=["batch_max_requests"])
# Cron with a seconds field (croniter's sixth); each cluster's scheduler looks every 30 s, so
# with two clusters the tick runs about every 15 s.
changed = Schedule.objects.filter(func="batches.tasks.tick").update(
    schedule_type=Schedule.CRON, cron="* * * * * */5", next_run=timezone.now()
)
assert changed == 1, changed
print("ok")
"""
    )


def stream_on(llmops: Llmops, prompt: str) -> dict:
    """A completion streamed on `llmops`'s /ws/stream/; its `done` message."""
    with llmops.ws("/ws/stream/") as ws:
        ws.send(
            json.dumps(
                {
                    "type": "start",
                    "workload": "product-search",
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 40,
                }
            )
        )
        while (message := json.loads(ws.recv(timeout=60)))["type"] not in ("done", "error"):
            pass
    assert message["type"] == "done", message
    return message


def defer(llmops: Llmops, workload: str, prompt: str) -> str:
    status, body = llmops.api(
        "POST",
        "/api/v1/requests",
        {"workload": workload, "messages": [{"role": "user", "content": prompt}], "max_tokens": 30},
    )
    assert status == 202, (status, body)
    return body["id"]


def statuses(llmops: Llmops, ids: set[str]) -> dict[str, str]:
    status, body = llmops.api("GET", "/api/v1/requests?limit=1000")
    assert status == 200, body
    return {r["id"]: r["status"] for r in body["results"] if r["id"] in ids}


def wait_until_done(llmops: Llmops, ids: set[str]) -> dict[str, str]:
    """Poll the API until every request ended (or the bound passed); their statuses."""
    deadline = time.monotonic() + COMPLETION_TIMEOUT_S
    while True:
        now = statuses(llmops, ids)
        ended = {i for i, s in now.items() if s in ("completed", "failed", "cancelled")}
        if len(ended) == len(ids) or time.monotonic() > deadline:
            return now
        time.sleep(2)


SERVER_FACTS = """
import json
from collections import Counter
from django_q.models import Task
from batches.models import BatchItem, BatchJob
from billing.models import Hold, LedgerEntry
ids = %r
jobs = [
    dict(id=j.pk, kind=j.provider.kind, status=j.status, batch=j.provider_batch_id,
         input_file=j.input_file_id, items=j.item_count, succeeded=j.succeeded_count,
         attempts=j.attempts, polls=j.polls, last_error=j.last_error)
    for j in BatchJob.objects.select_related("provider").order_by("pk")
]
entries = list(
    LedgerEntry.objects.filter(request_id__in=ids).values_list("request_id", "kind", "mode")
)
tasks = [
    dict(name=t.name, func=t.func, args=list(t.args or ()), success=t.success,
         started=t.started.isoformat(), stopped=t.stopped.isoformat())
    for t in Task.objects.filter(func__startswith="batches.tasks.")
]
print(json.dumps(dict(
    jobs=jobs,
    entries=[[str(r), k, m] for r, k, m in entries],
    items=Counter(str(r) for r in BatchItem.objects.filter(request_id__in=ids)
                  .values_list("request_id", flat=True)),
    held=Hold.objects.filter(request_id__in=ids, status="held").count(),
    tasks=tasks,
)))
"""


def provider_batches(sim) -> dict[str, list[str]]:
    """Job id → the provider batches at the simulator that carry it (OpenAI: the metadata we
    set; Anthropic: the job id inside every result's custom_id, llmops-<job>-<request>)."""
    found = defaultdict(list)
    oa = openai.OpenAI(base_url=sim.openai_base_url, api_key="sim", max_retries=0)
    for batch in oa.batches.list(limit=100):
        found[(batch.metadata or {}).get("llmops_job", "?")].append(batch.id)
    an = anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sim", max_retries=0)
    for batch in an.messages.batches.list(limit=1000):
        if batch.processing_status != "ended":  # no results yet: nobody's, as far as we know
            found[f"unended:{batch.id}"].append(batch.id)
            continue
        owners = {r.custom_id.split("-")[1] for r in an.messages.batches.results(batch.id)}
        found[owners.pop() if len(owners) == 1 else f"mixed:{sorted(owners)}"].append(batch.id)
    return dict(found)


def input_files(sim) -> Counter:
    oa = openai.OpenAI(base_url=sim.openai_base_url, api_key="sim", max_retries=0)
    return Counter(f.filename for f in oa.files.list(purpose="batch"))


def concurrent_deliveries(tasks: list[dict], cluster_of: dict[str, str]) -> int:
    """Pairs of advance tasks for the same job that ran at the same time on different
    clusters: moments where only the claim stood between a job and being worked twice."""
    by_job = defaultdict(list)
    for task in tasks:
        if task["func"] == "batches.tasks.advance" and task["name"] in cluster_of:
            started = datetime.fromisoformat(task["started"])
            stopped = datetime.fromisoformat(task["stopped"])
            by_job[task["args"][0]].append((started, stopped, cluster_of[task["name"]]))
    pairs = 0
    for runs in by_job.values():
        for i, (s1, e1, c1) in enumerate(runs):
            for s2, e2, c2 in runs[i + 1 :]:
                pairs += c1 != c2 and s1 < e2 and s2 < e1
    return pairs


def test_two_daphne_and_two_clusters_notify_across_processes_and_batch_once(figures, tmp_path):
    with ExitStack() as stack:
        sim = stack.enter_context(running_simulator(config=SIM_CONFIG))
        database_url = stack.enter_context(fresh_database())
        a = stack.enter_context(
            running_llmops(
                sim.base_url,
                tmp_path / "data",
                database_url=database_url,
                LLMOPS_WS_RESYNC_SECONDS="3600",  # pushes only through the channel layer
            )
        )
        configure(a)
        clusters = [
            stack.enter_context(worker_cluster(a.env, tmp_path / "cluster-1.log", "cluster-1"))
        ]
        b = dataclasses.replace(
            a, base_url=stack.enter_context(serving(a.env, tmp_path / "daphne-b.log"))
        )
        # Started after daphne B came up, so the two schedulers (one look every 30 s each)
        # are unlikely to look at the same moment.
        clusters.append(
            stack.enter_context(worker_cluster(a.env, tmp_path / "cluster-2.log", "cluster-2"))
        )
        assert a.base_url != b.base_url

        notes_a = Listener(stack.enter_context(a.ws("/ws/requests/")))
        notes_a.send({"type": "subscribe", "all": True})
        assert notes_a.wait(lambda m: any(x["type"] == "subscribed" for x in m), 10)

        # A stream served by B, watched from A.
        done = stream_on(b, "Which lantern lasts a whole night of rain?")
        streamed = done["request_id"]
        stream_seen_on_a = notes_a.wait(lambda m: streamed in notes_a.completed([streamed]), 15)

        # 60 deferred requests, every other one through each daphne process.
        origin: dict[str, str] = {}
        n = 0
        for workload, (_, count) in WORKLOADS.items():
            for i in range(count):
                via = (a, b)[n % 2]
                rid = defer(via, workload, f"mp {workload} {i}: summarise order {n}")
                origin[rid] = "A" if via is a else "B"
                n += 1
        ids = set(origin)
        from_b = {i for i, o in origin.items() if o == "B"}

        # On B, a socket subscribed by id: its pushes come through each request's own group.
        notes_b = Listener(stack.enter_context(b.ws("/ws/requests/")))
        notes_b.send({"type": "subscribe", "request_ids": sorted(ids)})
        assert notes_b.wait(lambda m: len(notes_b.statuses()) == REQUESTS, 20), notes_b.messages
        initial_on_b = {i: set(s) for i, s in notes_b.statuses().items()}

        # The fault: the tick delivered TICK_BURST times at once, to whichever workers take it.
        a.shell(
            "from django_q.tasks import async_task\n"
            f"for _ in range({TICK_BURST}): async_task('batches.tasks.tick')\n"
            "print('ok')"
        )

        final = wait_until_done(b, ids)
        notes_a.wait(lambda m: len(notes_a.completed(ids)) == REQUESTS, PUSH_TIMEOUT_S)
        notes_b.wait(lambda m: len(notes_b.completed(ids)) == REQUESTS, PUSH_TIMEOUT_S)

        facts = json.loads(a.shell(SERVER_FACTS % sorted(ids)))
        at_sim = provider_batches(sim)
        files = input_files(sim)
        usage = sim.usage()
        cluster_of = {name: c.label for c in clusters for name in c.processed()}
        tasks_by_cluster = {c.label: c.counts() for c in clusters}
        cluster_logs = {c.label: c.log() for c in clusters}

        # Every push counted here was made by another process than the socket's daphne: B's front
        # door (requests submitted through B, the stream) or a worker cluster (batch results).
        # Before its batch result only the front door sends a group message for a request (the
        # flush moves queued requests to running in one UPDATE and sends none: subscribers were
        # meant to catch up by the periodic read, off here), so a queued or running push on A
        # for a request submitted through B is B's, whichever state A read when it arrived.
        seen_on_a = notes_a.statuses()
        queued_crossed = {i for i in from_b if seen_on_a.get(i, set()) & {"queued", "running"}}
        running_on_a = {i for i in ids if "running" in seen_on_a.get(i, set())}
        completed_on_a = notes_a.completed(ids)
        completed_on_b = notes_b.completed(ids) - {
            i for i, s in initial_on_b.items() if "completed" in s
        }
        crossed = len(queued_crossed) + len(completed_on_a) + len(completed_on_b) + stream_seen_on_a

        jobs = facts["jobs"]
        entries = Counter(r for r, _, _ in facts["entries"])
        duplicates = sum(count - 1 for count in entries.values() if count > 1)
        job_ids = {str(j["id"]) for j in jobs}
        batch_requests = sum(
            modes.get("batch", {}).get("requests", 0)
            for provider in ("openai", "anthropic")
            for modes in usage[provider].values()
        )
        failed_tasks = [t for t in facts["tasks"] if not t["success"]]
        figures.record(
            "MP",
            "two daphne + two clusters",
            daphne=2,
            clusters=2,
            requests=REQUESTS,
            completed=sum(s == "completed" for s in final.values()),
            jobs=len(jobs),
            provider_batches=sum(len(v) for v in at_sim.values()),
            simulator_batch_requests=batch_requests,
            ledger_entries=sum(entries.values()),
            duplicate_entries=duplicates,
            ws_notifications_crossed=crossed,
            ws_completed_pushed_on_a=len(completed_on_a),
            ws_completed_pushed_on_b=len(completed_on_b),
            ws_submitted_on_b_pushed_on_a=len(queued_crossed),
            ws_flushed_running_pushed_on_a=len(running_on_a),
            stream_on_b_seen_on_a=stream_seen_on_a,
            tasks_by_cluster=tasks_by_cluster,
            same_job_concurrent_deliveries=concurrent_deliveries(facts["tasks"], cluster_of),
            job_step_failures=sum(j["attempts"] for j in jobs),
            failed_tasks=len(failed_tasks),
        )
        # Recorded before the clusters and daphne processes stop: their exits assert no traceback.

    # Notifications crossed processes, through the channel layer only.
    assert stream_seen_on_a, notes_a.statuses().get(streamed)
    assert queued_crossed == from_b, sorted(from_b - queued_crossed)
    assert completed_on_a == ids, sorted(ids - completed_on_a)
    assert not any("completed" in s for s in initial_on_b.values())
    assert completed_on_b == ids, sorted(ids - completed_on_b)
    for label, text in cluster_logs.items():
        assert "could not publish" not in text, (label, text)

    # Every request answered by a batch, once.
    assert final == dict.fromkeys(ids, "completed"), Counter(final.values())
    assert dict(facts["items"]) == dict.fromkeys(ids, 1)  # one job each: no request flushed twice
    assert sorted(entries.items()) == sorted(dict.fromkeys(ids, 1).items())
    assert {(k, m) for _, k, m in facts["entries"]} == {("charge", "batch")}
    assert facts["held"] == 0

    # Each job ran once: whole, completed, no failed or repeated step, one provider batch.
    assert len(jobs) == JOBS, jobs
    by_kind = Counter()
    for kind, count in WORKLOADS.values():
        by_kind[kind] += count // BATCH_SIZE
    assert Counter(j["kind"] for j in jobs) == by_kind, jobs
    for job in jobs:
        assert (job["status"], job["items"], job["succeeded"]) == (
            "completed",
            BATCH_SIZE,
            BATCH_SIZE,
        ), job
        assert (job["attempts"], job["last_error"]) == (0, ""), job
    assert set(at_sim) == job_ids, at_sim  # every provider batch belongs to exactly one job
    assert all(len(batches) == 1 for batches in at_sim.values()), at_sim
    assert {at_sim[str(j["id"])][0] for j in jobs} == {j["batch"] for j in jobs}
    openai_jobs = [j for j in jobs if j["kind"] == "openai"]
    assert files == Counter({f"llmops-job-{j['id']}.jsonl": 1 for j in openai_jobs}), files
    assert batch_requests == REQUESTS, usage  # nobody sent an item to a provider twice

    # The work was shared: both clusters ran batch steps, and no task failed.
    for counts in tasks_by_cluster.values():
        assert counts.get("advance", 0) >= 1, tasks_by_cluster
    assert failed_tasks == [], failed_tasks
