"""A provider batch's results recorded a chunk at a time in a few set-based statements
(batches/services/ingest.py, billing/ledger_bulk.py) leave exactly the rows and counters that
recording them one at a time (hold_settle / ledger_record_usage per line, the per-result path
this replaced, kept below as the reference) left: entries, holds, budget periods, requests and
items, for a chunk mixing every kind of line."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from functools import partial
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from batches import services
from batches.models import BatchItem, BatchJob
from batches.services import ingest
from batches.services.common import WriteGaps
from billing import ledger_bulk, selectors
from billing import services as billing_services
from billing.models import Budget, BudgetPeriod, Hold, LedgerEntry
from billing.pricing import PricingError, Usage, price_usage
from billing.services import budget_create, hold_settle, holds_sweep, ledger_record_usage
from llmops import memo
from routing import conversations, events
from routing.events import request_changed, request_touch
from routing.models import LlmModel, Mode, Request
from routing.providers import BatchOutcome, Completion
from routing.response_cache import response_cache_put

pytestmark = pytest.mark.django_db

# Every column of an entry but its id and time: a field added to LedgerEntry and left out of
# billing.ledger_bulk's rows (or of ledger_record_usage's) makes the two paths differ here.
ENTRY_FIELDS = tuple(
    f.attname for f in LedgerEntry._meta.concrete_fields if f.name not in ("id", "occurred_at")
)


# --- the per-result path, as it was before the set-based one --------------------------------


def per_result_record(job: BatchJob, outcomes, pending: dict[str, int], *, now) -> None:
    item_ids = [pending[o.custom_id] for o in outcomes]
    items = {
        item.custom_id: item
        for item in BatchItem.objects.filter(pk__in=item_ids).select_related(
            "request__team", "request__workload__policy"
        )
    }
    holds = {
        hold.request_id: hold
        for hold in Hold.objects.filter(
            request_id__in=[i.request_id for i in items.values()], status=Hold.Status.HELD
        )
    }
    with transaction.atomic():
        for outcome in outcomes:
            item = items[outcome.custom_id]
            _per_result(job, item, outcome, holds.get(item.request_id), now=now)
            pending.pop(outcome.custom_id, None)


def _per_result(job, item, outcome, hold, *, now) -> None:
    status, error = outcome.outcome, outcome.error
    usage = None
    if status == "succeeded":
        try:
            usage = Usage(**outcome.completion.usage.__dict__)
        except (PricingError, TypeError) as exc:
            status, error = "invalid", f"unusable usage: {exc}"
    changed = BatchItem.objects.filter(pk=item.pk, status=BatchItem.Status.PENDING).update(
        status=status, error=error[:500], ended_at=now
    )
    if changed != 1 or usage is None:
        return
    request = item.request
    key = f"batch:{item.custom_id}"
    note = (
        "answered after its request was cancelled"
        if request.status == Request.Status.CANCELLED
        else ""
    )
    if hold is not None:
        hold_settle(hold=hold, key=key, model=job.model, mode=Mode.BATCH, usage=usage, note=note)
    else:
        ledger_record_usage(
            key=key,
            team=request.team,
            workload=request.workload,
            request=request,
            model=job.model,
            mode=Mode.BATCH,
            usage=usage,
            note=note,
        )
    if request.status != Request.Status.RUNNING:
        return
    completion = outcome.completion
    request.model = job.model
    request.mode = Mode.BATCH
    request.output = completion.text
    request.finish_reason = completion.finish_reason
    request.answer = conversations.recorded_answer(request, completion)
    request.usage = usage.as_dict()
    request.status = Request.Status.COMPLETED
    request.completed_at = request.first_token_at = now
    request_touch(request)
    request.save(update_fields=[*ingest.COMPLETED_FIELDS])
    request_changed(request)
    if request.params.get("kind") == "responses":
        conversations.response_store(request)
    policy = request.workload.policy
    if policy.cache_enabled and request.source != Request.Source.BATCH_API:
        transaction.on_commit(
            partial(response_cache_put, policy=policy, params=request.params, request=request)
        )


# --- the world -----------------------------------------------------------------------------


def answered(custom_id: str, n: int, usage=None) -> BatchOutcome:
    text = f"answer {n}"
    return BatchOutcome(
        custom_id,
        "succeeded",
        Completion(
            text=text,
            finish_reason="stop",
            usage=usage or Usage(input_tokens=1000 + 37 * n, output_tokens=200 + 11 * n),
            model="gpt-4o-mini",
            answer={
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            },
        ),
    )


class FakeBatchApi:
    def __init__(self, outcomes):
        self.outcomes = outcomes
        self.downloads = 0

    def batch_results(self, endpoint, *, info):
        self.downloads += 1
        yield from self.outcomes


@pytest.fixture
def world(demo, defer):
    """A job of deferred review-moderation requests whose provider batch has ended (acme's
    month budget and a day budget on the workload: each hold reserves in two periods)."""
    budget_create(
        team=demo.acme,
        workload=demo.workloads["review-moderation"],
        period=Budget.Period.DAY,
        limit_usd=Decimal(100),
    )

    def make(n: int) -> tuple[BatchJob, list[BatchItem]]:
        defer("review-moderation", n)
        (job,) = services.batches_flush(force=True).jobs
        BatchJob.objects.filter(pk=job.pk).update(
            status=BatchJob.Status.INGESTING,
            provider_batch_id="batch_test",
            provider_status="completed",
        )
        job = BatchJob.objects.select_related("provider", "model", "team").get(pk=job.pk)
        return job, list(BatchItem.objects.filter(job=job).order_by("pk"))

    return make


def mixed_chunk(items: list[BatchItem]) -> list[BatchOutcome]:
    """Two plain answers, a refusal, an answer with unusable usage, an answer to a request its
    client cancelled, an answer whose hold expired, a line that never ran, and a repeat."""
    (a, b, refused, unusable, cancelled, expired, never_ran) = items
    assert services.request_cancel(request=cancelled.request)
    hold = Hold.objects.get(request=expired.request)
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    assert holds_sweep() == 1
    negative = SimpleNamespace(
        input_tokens=-3,
        cached_input_tokens=0,
        cache_write_tokens=0,
        output_tokens=5,
        reasoning_tokens=0,
    )
    return [
        answered(a.custom_id, 0),
        answered(b.custom_id, 1),
        BatchOutcome(refused.custom_id, "errored", error="500: the model is overloaded"),
        answered(unusable.custom_id, 3, usage=negative),
        answered(cancelled.custom_id, 4),
        answered(expired.custom_id, 5),
        BatchOutcome(never_ran.custom_id, "expired", error="batch_expired: too late"),
        BatchOutcome(a.custom_id, "errored", error="a repeat of a line already given"),
    ]


def snapshot(job: BatchJob) -> dict:
    request_ids = list(BatchItem.objects.filter(job=job).values_list("request_id", flat=True))
    holds = Hold.objects.filter(request_id__in=request_ids)
    return {
        "entries": sorted(
            LedgerEntry.objects.filter(request_id__in=request_ids).values_list(*ENTRY_FIELDS)
        ),
        "holds": sorted(
            (str(h.request_id), h.status, h.amount_usd, h.resolved_at is None) for h in holds
        ),
        "periods": sorted(BudgetPeriod.objects.values_list("pk", "spent_usd", "reserved_usd")),
        "requests": sorted(
            Request.objects.filter(pk__in=request_ids).values_list(
                "pk",
                "status",
                "model_id",
                "mode",
                "output",
                "finish_reason",
                "answer",
                "usage",
                "completed_at",
                "first_token_at",
            ),
            key=str,
        ),
        "items": sorted(
            BatchItem.objects.filter(job=job).values_list(
                "custom_id", "status", "error", "ended_at"
            )
        ),
    }


class _Rollback(Exception):
    pass


def per_result_snapshot(job: BatchJob, outcomes, *, now) -> dict:
    """What the per-result path leaves, rolled back afterwards."""
    pending = dict(BatchItem.objects.filter(job=job).values_list("custom_id", "pk"))
    try:
        with transaction.atomic():
            per_result_record(job, outcomes, pending, now=now)
            result = snapshot(job)
            raise _Rollback
    except _Rollback:
        pass
    memo.reset()
    return result


def record(job: BatchJob, outcomes, *, now) -> None:
    # Every item of the job, pending or not (a stale list is what a second ingest may hold).
    items = BatchItem.objects.filter(job=job).values_list("custom_id", "pk", "request_id")
    pending = {custom_id: (pk, request_id) for custom_id, pk, request_id in items}
    ingest._record_outcomes(job, outcomes, pending, now=now, gaps=WriteGaps())


# --- the tests -------------------------------------------------------------------------------


def test_a_mixed_chunk_leaves_what_recording_each_line_in_turn_left(world):
    job, items = world(7)
    outcomes = mixed_chunk(items)
    now = timezone.now()
    reference = per_result_snapshot(job, outcomes, now=now)

    record(job, outcomes, now=now)

    assert snapshot(job) == reference


def test_a_request_deferred_on_another_model_completes_on_the_jobs(world, demo):
    """The model is written only when some request of the chunk has another (an UPDATE naming
    it moves every row's index entry): one request on another model, and the chunk leaves
    what recording each line in turn left, that request on the job's model."""
    job, items = world(7)
    other = LlmModel.objects.exclude(pk=job.model_id).first()
    Request.objects.filter(pk=items[0].request_id).update(model=other)
    outcomes = mixed_chunk(items)
    now = timezone.now()
    reference = per_result_snapshot(job, outcomes, now=now)

    record(job, outcomes, now=now)

    assert snapshot(job) == reference
    assert Request.objects.get(pk=items[0].request_id).model_id == job.model_id


def test_the_model_is_written_only_when_a_request_has_another(world):
    job, items = world(7)
    outcomes = mixed_chunk(items)

    with CaptureQueriesContext(connection) as queries:
        record(job, outcomes, now=timezone.now())

    (update,) = [q["sql"] for q in queries if 'UPDATE "routing_request"' in q["sql"]]
    assert '"model_id"' not in update.split("WHERE")[0]
    assert '"status"' in update and '"answer"' in update


def test_a_chunk_partly_recorded_already_records_only_the_rest(world):
    """Prices and rows are worked out before the chunk's transaction, for every line read as
    pending; what the transaction writes is only what its items' UPDATE found still pending
    (another ingest of the same job recorded the first lines meanwhile)."""
    job, items = world(7)
    outcomes = mixed_chunk(items)
    now = timezone.now()
    reference = per_result_snapshot(job, outcomes, now=now)

    record(job, outcomes[:3], now=now)
    record(job, outcomes, now=now)  # all seven read as pending: three were not any more

    assert snapshot(job) == reference


def test_a_mixed_chunk_bills_each_answer_once_and_gives_back_each_settled_reservation(world):
    job, items = world(7)
    outcomes = mixed_chunk(items)
    (a, b, refused, unusable, cancelled, expired, never_ran) = items
    holds = {h.request_id: h for h in Hold.objects.filter(request__batch_items__job=job)}
    periods = list(BudgetPeriod.objects.order_by("pk"))
    assert len(periods) == 2  # acme's month, review-moderation's day
    links = {
        p.pk: set(Hold.periods.through.objects.filter(budgetperiod=p).values_list("hold_id"))
        for p in periods
    }
    assert all(len(hold_ids) == 7 for hold_ids in links.values())
    before = {p.pk: (p.spent_usd, p.reserved_usd) for p in periods}
    now = timezone.now()

    record(job, outcomes, now=now)

    billed = {a: 0, b: 1, cancelled: 4, expired: 5}
    entries = {e.request_id: e for e in LedgerEntry.objects.filter(request__batch_items__job=job)}
    assert set(entries) == {item.request_id for item in billed}
    batch_price = selectors.price_in_force(job.model, "batch", now)
    standard_price = selectors.price_in_force(job.model, "standard", now)
    for item, n in billed.items():
        entry = entries[item.request_id]
        usage = Usage(input_tokens=1000 + 37 * n, output_tokens=200 + 11 * n)
        assert entry.idempotency_key == f"batch:{item.custom_id}"
        assert (entry.kind, entry.mode, entry.model_id) == ("charge", "batch", job.model_id)
        assert (entry.input_tokens, entry.output_tokens) == (
            usage.input_tokens,
            usage.output_tokens,
        )
        assert entry.cost_usd == price_usage(usage, batch_price).total > 0
        assert entry.batch_cost_usd == entry.cost_usd
        assert entry.standard_cost_usd == price_usage(usage, standard_price).total
        assert entry.counterfactual_price_id == standard_price.id  # gpt-4o-mini is primary
        assert entry.counterfactual_cost_usd == entry.standard_cost_usd
        assert entry.price_id == batch_price.id and entry.flex_cost_usd is None
        assert entry.note == ("answered after its request was cancelled" if n == 4 else "")
        assert now <= entry.occurred_at <= timezone.now()
    spent = sum(e.cost_usd for e in entries.values())
    settled = [a, b, cancelled]
    returned = sum(holds[i.request_id].amount_usd for i in settled)
    for period in periods:
        period.refresh_from_db()
        spent_before, reserved_before = before[period.pk]
        assert period.spent_usd == spent_before + spent == selectors.period_spent(period)
        # The settled holds' reservations went back; the expired one's had gone already; the
        # others stay reserved until the job ends.
        assert period.reserved_usd == reserved_before - returned
        assert period.reserved_usd == sum(
            h.amount_usd for h in Hold.objects.filter(status=Hold.Status.HELD, periods=period)
        )
    status = {h.request_id: h.status for h in Hold.objects.filter(request__batch_items__job=job)}
    assert status == {
        a.request_id: "settled",
        b.request_id: "settled",
        cancelled.request_id: "settled",
        expired.request_id: "expired",
        refused.request_id: "held",
        unusable.request_id: "held",
        never_ran.request_id: "held",
    }
    requests = {r.pk: r for r in Request.objects.filter(batch_items__job=job)}
    for item, n in ((a, 0), (b, 1), (expired, 5)):
        request = requests[item.request_id]
        assert request.status == Request.Status.COMPLETED and request.output == f"answer {n}"
        assert (request.mode, request.model_id, request.finish_reason) == (
            "batch",
            job.model_id,
            "stop",
        )
        assert request.usage == Usage(**request.usage).as_dict()
        assert request.answer["id"] == f"chatcmpl-{n}"
        assert request.completed_at == request.first_token_at == now
    assert requests[cancelled.request_id].status == Request.Status.CANCELLED
    for item in (refused, unusable, never_ran):
        assert requests[item.request_id].status == Request.Status.RUNNING
    ended = dict(BatchItem.objects.filter(job=job).values_list("pk", "status"))
    assert ended == {
        a.pk: "succeeded",
        b.pk: "succeeded",
        refused.pk: "errored",
        unusable.pk: "invalid",
        cancelled.pk: "succeeded",
        expired.pk: "succeeded",
        never_ran.pk: "expired",
    }
    errors = dict(BatchItem.objects.filter(job=job).values_list("pk", "error"))
    assert errors[refused.pk] == "500: the model is overloaded"
    assert errors[unusable.pk].startswith("unusable usage: input_tokens must not be negative")
    assert errors[never_ran.pk] == "batch_expired: too late" and errors[a.pk] == ""


def test_recording_the_same_lines_again_records_nothing(world):
    job, items = world(7)
    outcomes = mixed_chunk(items)
    now = timezone.now()
    record(job, outcomes, now=now)
    after = snapshot(job)

    record(job, outcomes, now=timezone.now())  # a stale list of pending items: the same ids

    assert snapshot(job) == after


def test_a_charge_recorded_twice_is_written_counted_and_settled_once(world):
    job, items = world(2)
    request = items[0].request
    hold = Hold.objects.get(request=request)
    charge = ledger_bulk.Charge(
        key="batch:once",
        team=request.team,
        workload=request.workload,
        request_id=request.pk,
        usage=Usage(input_tokens=5000, output_tokens=700),
        hold=hold,
    )
    before = dict(BudgetPeriod.objects.values_list("pk", "spent_usd"))
    with transaction.atomic():  # twice in one set: the repeat is a retry of the first
        assert ledger_bulk.charges_record([charge, charge], model=job.model, mode=Mode.BATCH) == {
            "batch:once"
        }
    cost = LedgerEntry.objects.get(idempotency_key="batch:once").cost_usd
    for pk, spent in BudgetPeriod.objects.values_list("pk", "spent_usd"):
        assert spent == before[pk] + cost
    counters = sorted(BudgetPeriod.objects.values_list("pk", "spent_usd", "reserved_usd"))

    with transaction.atomic():
        assert ledger_bulk.charges_record([charge], model=job.model, mode=Mode.BATCH) == set()

    assert LedgerEntry.objects.filter(idempotency_key="batch:once").count() == 1
    assert sorted(BudgetPeriod.objects.values_list("pk", "spent_usd", "reserved_usd")) == counters
    hold.refresh_from_db()
    assert hold.status == Hold.Status.SETTLED


def test_a_usage_repeated_in_a_set_is_priced_once_and_alike(world, monkeypatch):
    job, items = world(3)
    calls = []
    real = billing_services.UsagePrices.price
    monkeypatch.setattr(
        billing_services.UsagePrices,
        "price",
        lambda self, usage: calls.append(usage) or real(self, usage),
    )
    same, other = (
        Usage(input_tokens=900, output_tokens=40),
        Usage(input_tokens=901, output_tokens=40),
    )
    charges = [
        ledger_bulk.Charge(
            key=f"batch:memo-{n}",
            team=item.request.team,
            workload=item.request.workload,
            request_id=item.request.pk,
            usage=usage,
        )
        for n, (item, usage) in enumerate(zip(items, (same, other, same), strict=True))
    ]

    priced = ledger_bulk.charges_price(charges, model=job.model, mode=Mode.BATCH)

    assert calls == [same, other]
    for charge in charges:
        alone = billing_services.usage_price(
            model=job.model,
            usage=charge.usage,
            mode=Mode.BATCH,
            counterfactual_model=selectors.primary_model(charge.workload),
            at=priced.at,
        )
        assert priced.priced[charge.key] == alone


def test_an_unpriceable_answer_fails_the_chunk_unless_it_was_billed_already(world, monkeypatch):
    job, items = world(2)
    request = items[0].request
    charge = ledger_bulk.Charge(
        key="batch:no-price",
        team=request.team,
        workload=request.workload,
        request_id=request.pk,
        usage=Usage(input_tokens=10, output_tokens=10),
    )

    def unpriced(**kwargs):
        raise PricingError("no batch price")

    monkeypatch.setattr(ledger_bulk, "UsagePrices", unpriced)
    with pytest.raises(PricingError), transaction.atomic():
        ledger_bulk.charges_record([charge], model=job.model, mode=Mode.BATCH)
    monkeypatch.undo()
    with transaction.atomic():
        ledger_bulk.charges_record([charge], model=job.model, mode=Mode.BATCH)
    monkeypatch.setattr(ledger_bulk, "UsagePrices", unpriced)

    with transaction.atomic():  # its retry finds it recorded: nothing to price
        assert ledger_bulk.charges_record([charge], model=job.model, mode=Mode.BATCH) == set()


# What recording a chunk of answers costs once the configuration memo is warm, however many
# lines it has: the items, their requests, teams and workloads, and the open holds read (4);
# the items ended (1); the entries inserted (1); their holds settled (1) and the periods of
# those read (1); one UPDATE per budget period (2 here: acme's month, the workload's day); the
# requests written (1, an executemany); and BEGIN and COMMIT. One at a time it was 7 per line
# (74 for these 10).
CHUNK_STATEMENTS = 13


@pytest.mark.django_db(transaction=True)  # the memo keeps nothing read in a test transaction
@pytest.mark.usefixtures("ledger_emptied_after")
def test_an_ingest_bills_every_line_once_in_a_few_statements_per_chunk(
    world, monkeypatch, settings, caplog
):
    settings.LLMOPS_BATCH_INGEST_CHUNK = 10
    settings.LLMOPS_BATCH_WRITE_PAUSE_MS = 0
    job, items = world(30)
    outcomes = [answered(item.custom_id, n) for n, item in enumerate(items)]
    outcomes.insert(5, answered(f"{job.custom_id_prefix}not-one-of-ours", 99))
    outcomes.insert(6, answered("someone-elses-line", 98))
    api = FakeBatchApi(outcomes)
    monkeypatch.setattr(ingest.providers, "batch_api", lambda kind: api)
    per_chunk = []
    record_chunk = ingest._record_outcomes

    def counted(*args, **kwargs):
        with CaptureQueriesContext(connection) as queries:
            record_chunk(*args, **kwargs)
        per_chunk.append([q["sql"] for q in queries.captured_queries])

    monkeypatch.setattr(ingest, "_record_outcomes", counted)

    with caplog.at_level(logging.ERROR, logger="batches.services.ingest"):
        ingest.job_ingest(job, now=timezone.now())

    assert len(per_chunk) == 3
    for sql in per_chunk[1:]:  # the first warmed the memo (prices, chains, budgets)
        assert len(sql) <= CHUNK_STATEMENTS, "\n".join(sql)
    assert LedgerEntry.objects.filter(request__batch_items__job=job).count() == 30
    assert not Hold.objects.filter(request__batch_items__job=job, status=Hold.Status.HELD).exists()
    job.refresh_from_db()
    assert job.status == BatchJob.Status.COMPLETED and job.succeeded_count == 30
    assert job.last_error == "1 result lines with unknown custom_ids ignored"
    assert "1 result lines with unknown custom_ids" in caplog.text
    for period in BudgetPeriod.objects.all():
        assert period.spent_usd == selectors.period_spent(period)
        assert period.reserved_usd == sum(
            h.amount_usd for h in Hold.objects.filter(status=Hold.Status.HELD, periods=period)
        )
    counters = sorted(BudgetPeriod.objects.values_list("pk", "spent_usd", "reserved_usd"))

    # Ingested again (a recovered job): nothing is pending, nothing is downloaded or billed.
    BatchJob.objects.filter(pk=job.pk).update(status=BatchJob.Status.INGESTING)
    ingest.job_ingest(job, now=timezone.now())

    assert api.downloads == 1
    assert LedgerEntry.objects.filter(request__batch_items__job=job).count() == 30
    assert sorted(BudgetPeriod.objects.values_list("pk", "spent_usd", "reserved_usd")) == counters


# A layer of this process: the messages' order, which several receives of a Redis layer from
# one test (each in an event loop of its own) do not show.
IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def test_completed_requests_are_told_to_their_groups_after_the_commit(
    world, django_capture_on_commit_callbacks, settings
):
    settings.CHANNEL_LAYERS = IN_MEMORY
    job, items = world(3)
    layer = get_channel_layer()
    channels = {}
    for item in items:
        channels[item.request_id] = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(
            events.request_group(item.request_id), channels[item.request_id]
        )
    team_channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(events.team_group(job.team_id), team_channel)
    outcomes = [answered(item.custom_id, n) for n, item in enumerate(items)]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        record(job, outcomes, now=timezone.now())
    for callback in callbacks:
        callback()

    for item in items:
        expected = {
            "type": "request.changed",
            "id": str(item.request_id),
            "team": job.team_id,
            "status": "completed",
        }
        assert async_to_sync(layer.receive)(channels[item.request_id]) == expected
        assert async_to_sync(layer.receive)(team_channel) == expected  # in order


def test_a_failing_channel_layer_is_logged_not_raised(
    world, django_capture_on_commit_callbacks, monkeypatch, caplog, settings
):
    settings.CHANNEL_LAYERS = IN_MEMORY
    job, items = world(2)
    layer = get_channel_layer()
    async_to_sync(layer.group_add)(events.team_group(job.team_id), "watcher")  # someone hears

    async def down(group, message):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(layer, "group_send", down)
    outcomes = [answered(item.custom_id, n) for n, item in enumerate(items)]
    with (
        caplog.at_level(logging.WARNING, logger="batches.services.ingest"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        record(job, outcomes, now=timezone.now())

    assert "could not publish 2 request status changes" in caplog.text
    assert Request.objects.filter(status=Request.Status.COMPLETED).count() == 2


def test_groups_nobody_joined_in_this_process_are_not_sent_to(
    world, django_capture_on_commit_callbacks, monkeypatch, settings
):
    """The in-memory layer of a worker process: no websocket is connected to it, so the
    ingest sends nothing (it once cost a loop in a thread and a pass per message); a group
    someone joined still hears every change."""
    settings.CHANNEL_LAYERS = IN_MEMORY
    job, items = world(3)
    layer = get_channel_layer()
    sent = []
    real = layer.group_send

    async def counted(group, message):
        sent.append(group)
        await real(group, message)

    monkeypatch.setattr(layer, "group_send", counted)
    with django_capture_on_commit_callbacks(execute=True):
        record(job, [answered(items[0].custom_id, 0)], now=timezone.now())
    assert sent == []

    watched = events.request_group(items[1].request_id)
    async_to_sync(layer.group_add)(watched, async_to_sync(layer.new_channel)())
    with django_capture_on_commit_callbacks(execute=True):
        record(
            job,
            [answered(item.custom_id, n) for n, item in enumerate(items[1:])],
            now=timezone.now(),
        )
    assert sent == [watched]
