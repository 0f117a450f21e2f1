"""The demo history: past traffic replayed through the real request path against the simulator
over HTTP, on a moved clock (llmops/history.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

import openai
import pytest
from django.db.models import Count, QuerySet
from django.utils import timezone

from batches.models import BatchJob
from billing.models import Budget, Hold, LedgerEntry
from billing.reports import Scope, workload_audit
from billing.selectors import primary_model
from llmops.demo import WORKLOADS
from llmops.history import (
    SIM_INSTANT,
    TRACE,
    How,
    history_plan,
    history_replay,
    messages_for,
    trace_rows,
)
from routing.models import Provider, Request, Team

DEMO_TEAMS = {
    # As the history replays them: the trace is chat traffic, embedding workloads get none.
    team: {
        slug: latency
        for slug, _, latency, _, policy in workloads
        if not policy.startswith("embeddings")
    }
    for team, workloads in WORKLOADS.items()
}
DAYS = 3

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def rows():
    return trace_rows(TRACE)


def dates(n: int, end: date = date(2026, 3, 2)) -> list[date]:
    return [end - timedelta(days=i) for i in range(n, 0, -1)]


# --- the sample ---------------------------------------------------------------------------


def test_the_plan_is_deterministic_and_its_days_differ(rows):
    plan = history_plan(rows=rows, dates=dates(4), per_day=60, teams=DEMO_TEAMS)

    assert plan == history_plan(rows=rows, dates=dates(4), per_day=60, teams=DEMO_TEAMS)
    assert [a.at for a in plan] == sorted(a.at for a in plan)
    by_day: dict[date, list] = {}
    for arrival in plan:
        by_day.setdefault(arrival.at.date(), []).append(arrival.trace_id)
    assert sorted(by_day) == dates(4)
    assert len({tuple(ids) for ids in by_day.values()}) == 4
    assert 0.6 * 60 * 4 <= len(plan) <= 1.2 * 60 * 4


def test_the_plan_maps_trace_traffic_onto_each_teams_workloads(rows):
    plan = history_plan(rows=rows, dates=dates(7), per_day=60, teams=DEMO_TEAMS)

    per_team = Counter(a.team for a in plan)
    assert per_team["globex"] < per_team["acme"] / 2
    assert {a.workload for a in plan if a.team == "acme"} == {
        "product-search",
        "review-moderation",
        "support-triage",
        "product-descriptions",
        "ticket-summaries",
        "listing-translations",
        "log-summaries",
    }
    globex = {(a.row.latency_class, a.workload) for a in plan if a.team == "globex"}
    assert ("realtime", "dashboard-qa") in globex and ("realtime", "exec-briefings") in globex
    assert {w for c, w in globex if c != "realtime"} == {"anomaly-alerts", "nightly-reports"}
    # The trace's near-realtime rows are dealt in turn to each near-realtime workload.
    near = Counter(
        a.workload for a in plan if a.workload in ("review-moderation", "support-triage")
    )
    assert near["review-moderation"] and near["support-triage"]
    assert abs(near["review-moderation"] - near["support-triage"]) <= 7  # a day's rounding
    dealt = {a.trace_id for a in plan if a.workload == "support-triage"}
    assert not dealt & {a.trace_id for a in plan if a.workload == "review-moderation"}
    hows = Counter((a.workload, a.how) for a in plan if a.team == "acme")
    assert hows["product-search", How.STREAM] and hows["product-search", How.CUT]
    assert hows["review-moderation", How.OPENAI] + hows["product-descriptions", How.OPENAI]
    assert not hows["product-search", How.OPENAI]
    # Repeated questions (the response cache's hits) are the same request, word for word.
    searches = [a for a in plan if a.workload == "product-search"]
    repeats = [a for a in searches if a.row.id != a.trace_id]
    assert repeats
    first = next(a for a in searches if a.trace_id == repeats[0].row.id)
    assert messages_for(first.row) == messages_for(repeats[0].row)
    assert first.row.max_tokens == repeats[0].row.max_tokens


def test_prompts_are_about_as_long_as_the_trace_says(rows):
    row = next(r for r in rows if r.input_tokens > 500)
    words = sum(len(m["content"].split()) for m in messages_for(row))
    assert 0.8 * row.input_tokens <= words <= 1.1 * row.input_tokens


# --- the replay ---------------------------------------------------------------------------


@pytest.fixture
def replayed(demo, sim):
    before = sim.config()
    report = history_replay(simulator_url=sim.base_url, days=DAYS, per_day=30)
    return report, before


def history() -> QuerySet[Request]:
    return Request.objects.filter(metadata__demo="history")


def test_history_bills_every_mode_once_per_request_over_the_past_days(replayed, sim):
    report, sim_config_before = replayed

    assert report.replayed and report.days == DAYS
    assert report.refused == report.failed == 0
    modes = {"realtime", "stream", "cache", "batch", "flex"}
    assert set(report.by_mode) == modes
    entries = LedgerEntry.objects.filter(request__metadata__demo="history")
    assert set(entries.values_list("mode", flat=True)) == modes
    today = timezone.now().date()
    days = {at.date() for at in entries.values_list("occurred_at", flat=True)}
    assert days == {today - timedelta(days=n) for n in range(1, DAYS + 1)}
    assert not entries.filter(occurred_at__gt=timezone.now()).exists()
    assert not history().filter(created_at__gt=timezone.now()).exists()
    # One charge (or estimate) per request that ran, under its request's key, nothing else.
    per_request = Counter(entries.values_list("request_id", flat=True))
    finished = history().filter(status__in=["completed", "cancelled"])
    assert set(per_request) == set(finished.values_list("pk", flat=True))
    assert set(per_request.values()) == {1}
    assert set(entries.values_list("kind", flat=True)) == {"charge", "estimate"}
    assert entries.count() == entries.values("idempotency_key").distinct().count()
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()
    assert report.ledger_total_usd == sum(e.cost_usd for e in entries)
    assert Decimal(0) < report.ledger_total_usd < report.counterfactual_usd
    # Both teams, each on its own workloads.
    assert set(history().values_list("team__slug", "workload__slug").distinct()) == {
        ("acme", "product-search"),
        ("acme", "review-moderation"),
        ("acme", "support-triage"),
        ("acme", "product-descriptions"),
        ("acme", "ticket-summaries"),
        ("acme", "listing-translations"),
        ("acme", "log-summaries"),
        ("globex", "dashboard-qa"),
        ("globex", "exec-briefings"),
        ("globex", "anomaly-alerts"),
        ("globex", "nightly-reports"),
    }
    counts = dict(history().values_list("mode").annotate(n=Count("id")).order_by())
    assert counts == report.by_mode and sum(counts.values()) == report.requests
    # Batches at half the counterfactual (realtime at the standard price on the workload's
    # primary model) where they ran on it, through provider batches that took minutes.
    batch = entries.filter(mode="batch").select_related("workload__policy", "model")
    assert {"listing-translations", "log-summaries"} <= set(
        batch.values_list("workload__slug", flat=True)
    )
    on_primary = [e for e in batch if e.model == primary_model(e.workload)]
    assert on_primary
    for entry in on_primary:
        assert abs(entry.cost_usd * 2 - entry.counterfactual_cost_usd) <= Decimal("1e-12")
    jobs = BatchJob.objects.filter(items__request__metadata__demo="history").distinct()
    assert jobs.count() == report.batch_jobs > 0
    # On every kind of provider batch: OpenAI's, Anthropic's, Azure's Global Batch, Gemini's.
    assert set(jobs.values_list("provider__kind", flat=True)) == {
        "openai",
        "anthropic",
        "azure_openai",
        "gemini",
    }
    for job in jobs:
        assert job.status == BatchJob.Status.COMPLETED
        assert timedelta(minutes=2) < job.ended_at - job.submitted_at < timedelta(minutes=15)
    # The simulator got its settings back.
    assert {k: sim.config()[k] for k in SIM_INSTANT} == {
        k: sim_config_before[k] for k in SIM_INSTANT
    }


def test_history_has_missed_savings_cut_streams_and_late_reads(replayed):
    report, _ = replayed

    missed = history().filter(missed_saving=True)
    assert missed.count() == report.missed_savings > 0
    assert set(missed.values_list("mode", "source", "status").distinct()) == {
        ("realtime", "openai", "completed")
    }
    assert set(missed.values_list("workload__latency_class", flat=True)) <= {
        "near_realtime",
        "scheduled",
    }

    cut = history().filter(status=Request.Status.CANCELLED)
    assert cut.count() == report.cut_streams > 0
    for request in cut:
        assert request.mode == "stream" and request.output
        assert request.ledger_entries.get().kind == LedgerEntry.Kind.ESTIMATE

    read = history().filter(first_read_at__isnull=False)
    assert read.count() == report.read
    assert all(r.first_read_at >= r.completed_at for r in read)
    assert not read.filter(first_read_at__gt=timezone.now()).exists()
    # Answers handed to a waiting client are read on delivery; batch results later, per
    # workload, and some never.
    delays: dict[str, list[timedelta]] = {}
    for r in read.select_related("workload"):
        delays.setdefault(f"{r.workload.latency_class}/{r.mode}", []).append(
            r.first_read_at - r.completed_at
        )
    assert set(delays["realtime/realtime"] + delays["realtime/cache"]) == {timedelta(0)}
    assert all(timedelta(minutes=1) < d < timedelta(hours=1) for d in delays["near_realtime/batch"])
    assert all(d > timedelta(hours=3) for d in delays["scheduled/batch"])
    assert history().filter(mode="batch", status="completed", first_read_at__isnull=True).exists()


def test_history_serves_triage_at_flex_alerts_at_full_price_and_repeats_dashboard_questions(
    replayed,
):
    """What the workload audit of the demo history finds: a flex opportunity (anomaly-alerts,
    flex off) beside a workload served at flex (support-triage), and a cache opportunity
    (dashboard-qa asks the same questions again with its cache off)."""
    entries = LedgerEntry.objects.filter(request__metadata__demo="history")
    flex = entries.filter(mode="flex").select_related("workload", "model")
    assert {(e.workload.slug, e.model.model_id) for e in flex} == {("support-triage", "gpt-5-mini")}
    assert all(e.cost_usd == e.flex_cost_usd < e.standard_cost_usd for e in flex)
    alerts = entries.filter(workload__slug="anomaly-alerts").select_related("model")
    assert alerts and {(e.mode, e.model.model_id) for e in alerts} == {("realtime", "gpt-5-mini")}
    assert all(e.flex_cost_usd is not None and e.flex_cost_usd < e.cost_usd for e in alerts)
    qa = history().filter(workload__slug="dashboard-qa", status="completed")
    asked = Counter(qa.values_list("prompt_fingerprint", flat=True))
    assert "" not in asked and max(asked.values()) > 1
    assert not qa.filter(cache_lookup=True).exists()

    today = timezone.now().date()
    scope = Scope(teams=Team.objects.all(), since=today - timedelta(days=DAYS), until=today)
    rows = {row.workload.slug: row for row in workload_audit(scope)}
    found = {
        (slug, r.action): r.value_per_month_usd
        for slug, row in rows.items()
        for r in row.recommendations
    }
    assert found["dashboard-qa", "enable_cache"] > 0
    assert found["anomaly-alerts", "allow_flex"] > 0
    assert rows["dashboard-qa"].repeats > 0
    assert rows["support-triage"].flexed == flex.count() and not rows["support-triage"].flex_missed
    assert rows["product-search"].cache_hits > 0  # acme's search box has its cache on


def test_a_second_replay_adds_nothing(replayed, sim):
    report, _ = replayed
    counts = (Request.objects.count(), LedgerEntry.objects.count())

    again = history_replay(simulator_url=sim.base_url, days=DAYS, per_day=30)

    assert not again.replayed
    assert (Request.objects.count(), LedgerEntry.objects.count()) == counts
    assert (again.requests, again.days, again.ledger_total_usd) == (
        report.requests,
        DAYS,
        report.ledger_total_usd,
    )


def test_refused_requests_are_reported_not_raised(demo, sim):
    Budget.objects.filter(team__slug="acme", workload=None).update(limit_usd=Decimal("0.001"))

    report = history_replay(simulator_url=sim.base_url, days=1, per_day=20)

    assert report.refused > 0
    assert "refused" in report.summary()
    # A refusal at admission writes no request row (a refused flood costs no writes); only
    # requests that failed upstream are failed rows.
    failed = history().filter(team__slug="acme", status="failed")
    assert failed.count() == report.failed < report.refused
    assert history().filter(team__slug="globex", status="completed").exists()


def test_history_refuses_providers_that_are_not_the_simulator(demo, sim):
    Provider.objects.filter(slug="sim-openai").update(base_url="https://api.openai.com/v1")

    with pytest.raises(ValueError, match="sim-openai do not point at the simulator"):
        history_replay(simulator_url=sim.base_url, days=1, per_day=10)
    assert not Request.objects.exists()


def test_history_refuses_a_simulator_that_already_holds_batches(demo, sim):
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sim", max_retries=0)
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    upload = client.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")

    with pytest.raises(ValueError, match="already holds openai batches or batch files"):
        history_replay(simulator_url=sim.base_url, days=1, per_day=10)
    assert upload.id and not Request.objects.exists()


def test_a_stopped_replay_ends_early_and_keeps_what_it_replayed(demo, sim):
    asked = iter(range(1000))

    report = history_replay(
        simulator_url=sim.base_url, days=2, per_day=30, stop=lambda: next(asked) >= 8
    )

    assert report.interrupted and report.replayed
    assert 0 < report.requests <= 8
    assert history().count() == report.requests
