"""Reads for batch jobs: turnaround statistics, what is due, what a caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import Case, Count, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce

from batches.models import BatchItem, BatchJob, ClientBatch
from billing.fields import MoneyField, usd_value
from billing.models import LedgerEntry
from billing.selectors import ledger_totals
from llmops.stats import nearest_rank
from routing.models import LlmModel, Mode, Team

# Observed turnaround replaces the provider's promise once this many batches have ended.
MIN_OBSERVATIONS = 5
# Recent batches say more about today's provider than last month's.
WINDOW = 200
# The router reads turnaround on every deferred admission: keep the figure a minute.
TURNAROUND_CACHE_SECONDS = 60


@dataclass(frozen=True)
class Turnaround:
    p50: timedelta | None
    p90: timedelta | None
    observed: int  # batches behind the figures

    @property
    def known(self) -> bool:
        return self.observed >= MIN_OBSERVATIONS


def turnaround(*, model: LlmModel) -> Turnaround:
    """p50 and p90 of submit → provider end, over this model's recent batches that ran to
    completion (cancelled and expired ones say nothing about how long a batch takes)."""
    rows = (
        BatchJob.objects.filter(
            model=model,
            status=BatchJob.Status.COMPLETED,
            submitted_at__isnull=False,
            ended_at__isnull=False,
        )
        .order_by("-ended_at")
        .values_list("submitted_at", "ended_at")[:WINDOW]
    )
    values = sorted(ended - submitted for submitted, ended in rows)
    if not values:
        return Turnaround(None, None, 0)
    return Turnaround(nearest_rank(values, 0.5), nearest_rank(values, 0.9), len(values))


def expected_turnaround(*, model: LlmModel) -> timedelta:
    """How long a batch of this model is expected to take: the observed p90 once known,
    else the provider's promise (cached briefly: the router asks on every deferral)."""
    key = f"llmops:turnaround:{model.pk}"
    seconds = cache.get(key)
    if seconds is None:
        stats = turnaround(model=model)
        expected = stats.p90 if stats.known else model.provider.expected_batch_turnaround
        seconds = expected.total_seconds()
        cache.set(key, seconds, TURNAROUND_CACHE_SECONDS)
    return timedelta(seconds=seconds)


def jobs_due(*, now: datetime) -> QuerySet[BatchJob]:
    """Jobs with a step to run now whose lease (if any) has lapsed."""
    return BatchJob.objects.exclude(
        status__in=(*BatchJob.TERMINAL, BatchJob.Status.BUILDING)
    ).filter(
        Q(next_check_at__lte=now)
        | Q(cancel_requested_at__isnull=False, cancel_sent_at__isnull=True),
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
    )


def client_batches_admitting(*, now: datetime) -> QuerySet[ClientBatch]:
    """Client batches whose admission has work left and no worker on it: still validating,
    or cancelled before their admission ended (the jobs built so far to abandon)."""
    return ClientBatch.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
        status__in=[ClientBatch.Status.VALIDATING, ClientBatch.Status.CANCELLING],
        in_progress_at__isnull=True,
    )


def jobs_for(*, teams: QuerySet[Team]) -> QuerySet[BatchJob]:
    return BatchJob.objects.filter(team__in=teams).select_related("team", "provider", "model")


# Where a job's requests were finally served when their item in it did not succeed.
SERVED_ELSEWHERE = (BatchItem.Next.ESCALATED, BatchItem.Next.RETRIED, BatchItem.Next.REBATCHED)


def _in_batch(job) -> QuerySet[LedgerEntry]:
    # A job's answers are the batch charges of the requests whose item in it succeeded (only
    # a succeeded item bills, and a request has one item per job): a join on indexed keys,
    # where matching the entries' custom_id keys by prefix would scan the ledger. One filter()
    # call, so that the item that succeeded is the item in this job.
    return LedgerEntry.objects.filter(
        mode=Mode.BATCH,
        request__batch_items__job=job,
        request__batch_items__status=BatchItem.Status.SUCCEEDED,
    )


def _elsewhere(job, created_at) -> QuerySet[LedgerEntry]:
    # What its other requests cost where they went next (served realtime, or a later batch).
    return LedgerEntry.objects.filter(
        request__batch_items__job=job,
        request__batch_items__next_step__in=SERVED_ELSEWHERE,
        occurred_at__gte=created_at,
    )


def job_ledger(job: BatchJob) -> dict:
    """What the job's items cost wherever they were finally served (its own answers at the
    batch price, plus requests escalated to realtime or retried in a later batch), what that
    would have cost realtime, and the difference, in USD, with token totals; the split in
    `batch_cost_usd` and `elsewhere_cost_usd`."""
    in_batch = ledger_totals(_in_batch(job))
    elsewhere = ledger_totals(_elsewhere(job, job.created_at))
    totals = {name: in_batch[name] + elsewhere[name] for name in in_batch}
    totals["batch_cost_usd"] = in_batch["cost_usd"]
    totals["elsewhere_cost_usd"] = elsewhere["cost_usd"]
    return totals


def _cost_of(entries: QuerySet[LedgerEntry]) -> Subquery:
    return Subquery(
        entries.order_by()
        .values("request__batch_items__job")
        .annotate(total=Sum("cost_usd"))
        .values("total"),
        output_field=MoneyField(),
    )


def with_cost(jobs: QuerySet[BatchJob]) -> QuerySet[BatchJob]:
    """`jobs` annotated in the same query with `cost_usd` (USD, wherever their items were
    served; None before any answer) and its part `batch_cost_usd`."""
    zero = usd_value(Decimal(0))
    return jobs.annotate(
        batch_cost_usd=_cost_of(_in_batch(OuterRef("pk"))),
        elsewhere_cost_usd=_cost_of(_elsewhere(OuterRef("pk"), OuterRef("created_at"))),
    ).annotate(
        cost_usd=Case(
            When(
                Q(batch_cost_usd__isnull=True) & Q(elsewhere_cost_usd__isnull=True),
                then=Value(None, output_field=MoneyField()),
            ),
            default=Coalesce("batch_cost_usd", zero) + Coalesce("elsewhere_cost_usd", zero),
            output_field=MoneyField(),
        )
    )


def item_counts(job: BatchJob) -> dict[str, int]:
    counts = dict(
        BatchItem.objects.filter(job=job).values_list("status").annotate(n=Count("id")).order_by()
    )
    return {status: counts.get(status, 0) for status in BatchItem.Status.values}


def turnaround_table() -> list[dict]:
    """p50/p90 turnaround per model that has batched, for the admin."""
    models = LlmModel.objects.filter(batch_jobs__isnull=False).select_related("provider").distinct()
    rows = []
    for model in models:
        stats = turnaround(model=model)
        rows.append(
            {
                "model": model,
                "p50": _whole_seconds(stats.p50),
                "p90": _whole_seconds(stats.p90),
                "observed": stats.observed,
                "expected": _whole_seconds(expected_turnaround(model=model)),
            }
        )
    return rows


def _whole_seconds(value: timedelta | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=round(value.total_seconds()))
