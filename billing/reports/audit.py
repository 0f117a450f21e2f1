"""The workload audit: each workload's declared latency class against how it is used, and what
would cost less: deferring to provider batches, serving at flex, turning the response cache
on. Each value is an exact sum over the range's ledger entries, scaled to a month at the
range's pace."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, timedelta
from decimal import Decimal

from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    Window,
)
from django.db.models.functions import Coalesce, ExtractHour, Lag

from billing.charts import NIGHT_HOURS
from billing.models import LedgerEntry
from billing.pricing import quantize
from billing.reports.scope import Scope
from billing.reports.spend import MISSED, SERVED_NOW, ZERO, usd_sum
from llmops.stats import nearest_rank
from routing.models import LatencyClass, Mode, Provider, Request, Workload
from routing.router import human

DAYS_PER_MONTH = Decimal(30)  # "per month" in recommendations: 30 days of the window's pace
# A flex answer can take minutes (the provider queues it behind standard traffic): a workload
# due sooner than this is no candidate for flex, whatever it declares.
FLEX_MIN_DEADLINE = timedelta(minutes=2)
DEFERRABLE = (LatencyClass.NEAR_REALTIME, LatencyClass.SCHEDULED)
NOT_REVERSAL = ~Q(kind=LedgerEntry.Kind.REVERSAL)
# A deferrable workload due in 2 minutes or more, served now at full price on a model with a
# flex price, by a provider that serves flex: what it cost minus what flex would have.
FLEX_MISSED = Q(
    mode__in=SERVED_NOW,
    flex_cost_usd__isnull=False,
    workload__latency_class__in=DEFERRABLE,
    workload__deadline__gte=FLEX_MIN_DEADLINE,
    model__provider__supports_flex=True,
    model__provider__kind__in=(Provider.Kind.OPENAI, Provider.Kind.OPENAI_COMPATIBLE),
)

# In the order a tie is broken: flex keeps the answer synchronous, so it goes before a batch.
ACTION_LABELS = {
    "keep": "keep",
    "enable_cache": "turn the cache on",
    "allow_flex": "allow flex",
    "use_flex": "serve at flex",
    "defer": "defer to batch",
    "allow_batch": "allow batch",
    "use_batch_api": "use the batch API",
}
ACTION_ORDER = list(ACTION_LABELS)


@dataclass(frozen=True)
class Recommendation:
    """One change to a workload or its policy and what it is worth: (what an eligible request
    cost - what it would have cost) x eligible requests, per month."""

    action: str  # a key of ACTION_LABELS, never "keep"
    text: str
    value_per_month_usd: Decimal
    eligible: int  # requests in the range it applies to
    eligible_per_month: int
    cost_per_request_usd: Decimal | None  # what one of them cost (on average)
    then_per_request_usd: Decimal | None  # what it would have cost

    @property
    def label(self) -> str:
        return ACTION_LABELS[self.action]


@dataclass
class AuditRow:
    workload: Workload
    requests: int = 0
    by_mode: dict[str, int] = field(default_factory=dict)
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    read_count: int = 0
    read_p50_s: float | None = None
    read_p90_s: float | None = None
    streams: int = 0
    streams_read_to_end: int = 0
    stream_tokens: int = 0
    stream_tokens_read_to_end: int = 0
    served_now: int = 0  # realtime and streamed entries on a model with a batch price
    served_now_standard_usd: Decimal = ZERO
    served_now_batch_usd: Decimal = ZERO
    missed: int = 0
    missed_usd: Decimal = ZERO
    missed_cost_usd: Decimal = ZERO
    batched: int = 0
    saved_by_batch_usd: Decimal = ZERO
    flexed: int = 0  # entries served at flex
    saved_by_flex_usd: Decimal = ZERO
    # Served now at full price though flex could have served them (FLEX_MISSED): what they
    # cost, and the same usage at the flex price.
    flex_missed: int = 0
    flex_missed_cost_usd: Decimal = ZERO
    flex_missed_flex_usd: Decimal = ZERO
    # The response cache: the window a repeat is counted in, the completed requests with a
    # fingerprint, those repeating one of them asked within the window (and their cost), and
    # the cache's actual lookups and hits where the policy has it on.
    cache_ttl: timedelta = timedelta(hours=1)
    fingerprinted: int = 0
    repeats: int = 0
    repeats_cost_usd: Decimal = ZERO
    cache_lookups: int = 0
    cache_hits: int = 0
    days: int = 1
    recommendations: list[Recommendation] = field(default_factory=list)
    # The most valuable recommendation (what a one-line summary shows), or "keep".
    recommendation: str = ""
    action: str = "keep"  # a key of ACTION_LABELS
    eligible: int = 0
    value_per_month_usd: Decimal = ZERO

    @property
    def action_label(self) -> str:
        return ACTION_LABELS[self.action]

    @property
    def night_share(self) -> float | None:
        return sum(self.hours[h] for h in NIGHT_HOURS) / self.requests if self.requests else None

    @property
    def stream_consumed_share(self) -> float | None:
        """Share of streamed output tokens in answers the client read to the end."""
        return self.stream_tokens_read_to_end / self.stream_tokens if self.stream_tokens else None

    @property
    def per_month(self) -> Decimal:
        return DAYS_PER_MONTH / Decimal(self.days)

    @property
    def eligible_per_month(self) -> int:
        return round(self.eligible * self.per_month)

    @property
    def stream_cost_per_request_usd(self) -> Decimal | None:
        return _each(self.served_now_standard_usd, self.served_now)

    @property
    def batch_cost_per_request_usd(self) -> Decimal | None:
        return _each(self.served_now_batch_usd, self.served_now)

    @property
    def repeat_share(self) -> float | None:
        return self.repeats / self.fingerprinted if self.fingerprinted else None

    @property
    def cache_value_per_month_usd(self) -> Decimal:
        """What a cache of this TTL would have saved a month: a hit costs nothing."""
        return quantize(self.repeats_cost_usd * self.per_month)

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.cache_lookups if self.cache_lookups else None

    @property
    def flex_value_per_month_usd(self) -> Decimal:
        saved = self.flex_missed_cost_usd - self.flex_missed_flex_usd
        return quantize(saved * self.per_month)


def _each(total: Decimal, n: int) -> Decimal | None:
    return quantize(total / n) if n else None


def workload_audit(scope: Scope, *, cache_ttl: timedelta | None = None) -> list[AuditRow]:
    """Each workload's declared latency class against how it is used, and what deferring,
    flex and the response cache would save per month. A repeat is a request asking what one
    of its workload asked at most `cache_ttl` before (default: the policy's cache TTL)."""
    workloads = Workload.objects.filter(team__in=scope.teams).select_related("team", "policy")
    if scope.workload is not None:
        workloads = workloads.filter(pk=scope.workload.pk)
    workloads = workloads.prefetch_related("policy__links__model__provider")
    rows = {
        w.pk: AuditRow(workload=w, days=scope.days, cache_ttl=cache_ttl or w.policy.cache_ttl)
        for w in workloads
    }
    requests = Request.objects.filter(
        workload_id__in=list(rows), created_at__gte=scope.start, created_at__lt=scope.end
    )
    modes = requests.values("workload_id", "mode").annotate(
        n=Count("id"), lookups=Count("id", filter=Q(cache_lookup=True))
    )
    for r in modes.order_by():
        row = rows[r["workload_id"]]
        row.by_mode[r["mode"] or "refused"] = r["n"]
        row.requests += r["n"]
        row.cache_lookups += r["lookups"]
        if r["mode"] == Mode.CACHE:
            row.cache_hits += r["lookups"]
    hourly = (
        requests.annotate(hour=ExtractHour("created_at", tzinfo=UTC))
        .values("workload_id", "hour")
        .annotate(n=Count("id"))
        .order_by()
    )
    for r in hourly:
        rows[r["workload_id"]].hours[r["hour"]] = r["n"]
    delays: dict[int, list[float]] = {pk: [] for pk in rows}
    read = requests.filter(first_read_at__isnull=False, completed_at__isnull=False)
    for workload_id, completed, first_read in read.values_list(
        "workload_id", "completed_at", "first_read_at"
    ).iterator():
        delays[workload_id].append(max(0.0, (first_read - completed).total_seconds()))
    for pk, values in delays.items():
        rows[pk].read_count = len(values)
        rows[pk].read_p50_s = nearest_rank(values, 0.5)
        rows[pk].read_p90_s = nearest_rank(values, 0.9)

    entries = LedgerEntry.objects.filter(
        workload_id__in=list(rows), occurred_at__gte=scope.start, occurred_at__lt=scope.end
    )
    read_to_end = Q(mode=Mode.STREAM, request__status=Request.Status.COMPLETED)
    served_now = Q(mode__in=SERVED_NOW, batch_cost_usd__isnull=False)
    sums = entries.values("workload_id").annotate(
        streams=Count("request", filter=Q(mode=Mode.STREAM), distinct=True),
        streams_read_to_end=Count("request", filter=read_to_end, distinct=True),
        stream_tokens=Coalesce(Sum("output_tokens", filter=Q(mode=Mode.STREAM)), 0),
        stream_tokens_read_to_end=Coalesce(Sum("output_tokens", filter=read_to_end), 0),
        served_now=Count("id", filter=served_now & NOT_REVERSAL),
        served_now_standard_usd=usd_sum("standard_cost_usd", served_now),
        served_now_batch_usd=usd_sum("batch_cost_usd", served_now),
        missed=Count("id", filter=MISSED & NOT_REVERSAL),
        missed_cost=usd_sum("cost_usd", MISSED),
        missed_batch=usd_sum("batch_cost_usd", MISSED),
        batched=Count("id", filter=Q(mode=Mode.BATCH) & NOT_REVERSAL),
        batch_standard=usd_sum("standard_cost_usd", Q(mode=Mode.BATCH)),
        batch_cost=usd_sum("cost_usd", Q(mode=Mode.BATCH)),
        flexed=Count("id", filter=Q(mode=Mode.FLEX) & NOT_REVERSAL),
        flex_standard=usd_sum("standard_cost_usd", Q(mode=Mode.FLEX)),
        flex_cost=usd_sum("cost_usd", Q(mode=Mode.FLEX)),
        flex_missed=Count("id", filter=FLEX_MISSED & NOT_REVERSAL),
        flex_missed_cost_usd=usd_sum("cost_usd", FLEX_MISSED),
        flex_missed_flex_usd=usd_sum("flex_cost_usd", FLEX_MISSED),
    )
    for s in sums.order_by():
        row = rows[s["workload_id"]]
        for name in (
            "streams",
            "streams_read_to_end",
            "stream_tokens",
            "stream_tokens_read_to_end",
            "served_now",
            "served_now_standard_usd",
            "served_now_batch_usd",
            "missed",
            "batched",
            "flexed",
            "flex_missed",
            "flex_missed_cost_usd",
            "flex_missed_flex_usd",
        ):
            setattr(row, name, s[name])
        row.missed_cost_usd = s["missed_cost"]
        row.missed_usd = s["missed_cost"] - s["missed_batch"]
        row.saved_by_batch_usd = s["batch_standard"] - s["batch_cost"]
        row.saved_by_flex_usd = s["flex_standard"] - s["flex_cost"]
    if rows:
        _count_repeats(rows, scope, cache_ttl)
    result = list(rows.values())
    for row in result:
        _recommend(row)
    return sorted(result, key=lambda r: (-r.value_per_month_usd, r.workload.team.slug,
                                         r.workload.slug))  # fmt: skip


def repeated_requests(
    workload_ids: list[int], *, start, end, cache_ttl: timedelta | None, lookback: timedelta
) -> QuerySet[Request]:
    """The completed requests created in [start, end) that ask what a completed request of the
    same workload asked (the same prompt fingerprint) at most the TTL before: what a response
    cache would have answered. The TTL is `cache_ttl`, else each workload's policy's.

    One set-based query: LAG over (workload, fingerprint) ordered by arrival gives each
    request its previous asking, rows from `lookback` before the range included so a repeat
    of an earlier request counts. A cache entry is not refreshed by a hit, so a chain of
    repeats each within the TTL of the last but not of the first counts a little high; a
    request without a fingerprint (recorded before it was kept) never counts."""
    asked = Request.objects.filter(
        workload_id__in=workload_ids,
        created_at__gte=start - lookback,
        created_at__lt=end,
        status=Request.Status.COMPLETED,
    ).exclude(prompt_fingerprint="")
    ttl = (
        Value(cache_ttl, output_field=DurationField())
        if cache_ttl is not None
        else F("workload__policy__cache_ttl")
    )
    # A filter on a window function is applied after the window (Django wraps the query),
    # any other in the same query before it: the range's start is applied outside, so LAG
    # still sees the requests before it.
    within_ttl = (
        asked.annotate(
            previous_at=Window(
                Lag("created_at"),
                partition_by=[F("workload_id"), F("prompt_fingerprint")],
                order_by=F("created_at").asc(),
            )
        )
        .annotate(
            gap=ExpressionWrapper(F("created_at") - F("previous_at"), output_field=DurationField())
        )
        .filter(gap__lte=ttl)
        .order_by()
        .values("pk")
    )
    return Request.objects.filter(pk__in=Subquery(within_ttl), created_at__gte=start)


def _count_repeats(rows: dict[int, AuditRow], scope: Scope, cache_ttl: timedelta | None) -> None:
    asked = Request.objects.filter(
        workload_id__in=list(rows),
        created_at__gte=scope.start,
        created_at__lt=scope.end,
        status=Request.Status.COMPLETED,
    ).exclude(prompt_fingerprint="")
    for r in asked.values("workload_id").annotate(n=Count("id")).order_by():
        rows[r["workload_id"]].fingerprinted = r["n"]
    repeats = repeated_requests(
        list(rows),
        start=scope.start,
        end=scope.end,
        cache_ttl=cache_ttl,
        lookback=max(row.cache_ttl for row in rows.values()),
    )
    for r in repeats.values("workload_id").annotate(n=Count("id")).order_by():
        rows[r["workload_id"]].repeats = r["n"]
    # What they cost, net of any reversal; a cache hit would have cost nothing.
    costs = LedgerEntry.objects.filter(request__in=repeats).values("workload_id")
    for r in costs.annotate(cost=usd_sum("cost_usd")).order_by():
        rows[r["workload_id"]].repeats_cost_usd = r["cost"]


def _recommend(row: AuditRow) -> None:
    """Every recommendation that applies, the most valuable first; the row's own action and
    value are the first's (they save on the same requests, so they do not add up)."""
    keep, batch = _batch_advice(row)
    found = [r for r in (_flex_advice(row), _cache_advice(row)) if r is not None]
    found += [batch] if batch is not None else []
    found.sort(key=lambda r: (-r.value_per_month_usd, ACTION_ORDER.index(r.action)))
    row.recommendations = found
    if found:
        best = found[0]
        row.action, row.recommendation = best.action, best.text
        row.eligible, row.value_per_month_usd = best.eligible, best.value_per_month_usd
    else:
        row.action, row.recommendation = "keep", keep
        row.eligible, row.value_per_month_usd = 0, ZERO


def _advice(
    row: AuditRow, action: str, text: str, *, eligible: int, cost: Decimal, then: Decimal
) -> Recommendation:
    """A recommendation for `eligible` requests that cost `cost` and would have cost `then`:
    per request the saving is exact (both prices of the request's own usage), so the
    difference is the sum over the eligible entries."""
    return Recommendation(
        action=action,
        text=text,
        value_per_month_usd=quantize((cost - then) * row.per_month),
        eligible=eligible,
        eligible_per_month=round(eligible * row.per_month),
        cost_per_request_usd=_each(cost, eligible),
        then_per_request_usd=_each(then, eligible),
    )


def _batch_advice(row: AuditRow) -> tuple[str, Recommendation | None]:
    """(what to say when nothing is to be done, the batch recommendation if any): stream cost
    - batch cost of the traffic served now that could have waited for a batch."""
    workload = row.workload
    policy = workload.policy
    served_now = {
        "eligible": row.served_now,
        "cost": row.served_now_standard_usd,
        "then": row.served_now_batch_usd,
    }
    if workload.latency_class != LatencyClass.REALTIME:
        if not policy.allow_batch and row.served_now:
            if not _batch_fits(workload):
                if workload.deadline is None:
                    return "Keep: no deadline to plan a batch by.", None
                return f"Keep: due in {human(workload.deadline)}, too soon for a batch.", None
            text = (
                f"Allow batch in policy {policy.name}: this {workload.latency_class} "
                "workload is served now at full price."
            )
            return "", _advice(row, "allow_batch", text, **served_now)
        if row.missed:
            text = (
                "Send these requests through the native API (a 202 ticket) or /v1/batches: "
                "the OpenAI-compatible chat endpoint, or a deadline too short for a batch, "
                "served them now at full price."
            )
            return "", _advice(
                row,
                "use_batch_api",
                text,
                eligible=row.missed,
                cost=row.missed_cost_usd,
                then=row.missed_cost_usd - row.missed_usd,
            )
        if row.flexed and not row.batched:
            return "Keep: served now at the flex price, as declared.", None
        if row.flexed:
            return "Keep: deferred to provider batches or served at the flex price.", None
        return "Keep: deferred to provider batches as declared.", None
    night = row.night_share
    late = row.read_p50_s is not None and row.read_p50_s >= 300
    if row.served_now and ((night is not None and night >= 0.5) or late):
        why = (
            f"{night:.0%} of its traffic arrives at night (22:00-06:00 UTC)"
            if night is not None and night >= 0.5
            else "its answers are read minutes after they are ready"
        )
        text = (
            f"Declared realtime, but {why}: no one seems to wait. Declare it near_realtime and "
            "allow batch."
        )
        return "", _advice(row, "defer", text, **served_now)
    if row.served_now:
        return "Keep realtime: traffic follows the day and answers are read at once.", None
    return "Keep: nothing served at full price in this range.", None


def _batch_fits(workload: Workload) -> bool:
    """A batch could meet the workload's deadline (as Workload.clean checks before allowing
    batch): the buffer's wait, the quickest batch provider's turnaround and the margin."""
    policy = workload.policy
    turnarounds = [
        link.model.provider.expected_batch_turnaround
        for link in policy.links.all()
        if link.model.batchable
    ]
    if not turnarounds or workload.deadline is None:
        return False
    return policy.max_batch_wait + min(turnarounds) + policy.deadline_margin <= workload.deadline


def _flex_advice(row: AuditRow) -> Recommendation | None:
    """Flex for deferrable traffic served now at full price on a model with a flex price."""
    if not row.flex_missed or row.flex_value_per_month_usd <= 0:
        return None
    workload, policy = row.workload, row.workload.policy
    if not policy.allow_flex:
        action = "allow_flex"
        text = (
            f"Allow flex in policy {policy.name}: this {workload.latency_class} workload, due "
            f"in {human(workload.deadline)}, is served now at full price on a model with a "
            "flex price; flex answers within minutes at about the batch price."
        )
    else:
        action = "use_flex"
        text = (
            f"Flex is allowed in policy {policy.name}, yet these requests were served now at "
            "full price on a model with a flex price: flex was refused (no capacity), the "
            "client named a service tier, or the deadline left no room for a flex call with "
            f"the {human(policy.deadline_margin)} margin (their decision reasons say which)."
        )
    return _advice(
        row,
        action,
        text,
        eligible=row.flex_missed,
        cost=row.flex_missed_cost_usd,
        then=row.flex_missed_flex_usd,
    )


def _cache_advice(row: AuditRow) -> Recommendation | None:
    """The response cache for a workload that repeats itself with the cache off."""
    if row.workload.policy.cache_enabled or not row.repeats or row.repeats_cost_usd <= 0:
        return None
    ttl = human(row.cache_ttl)
    text = (
        f"Turn the response cache on in policy {row.workload.policy.name} (TTL {ttl}): "
        f"{row.repeat_share:.0%} of its requests ({row.repeats} of {row.fingerprinted}) ask "
        f"what was asked within {ttl} before, and a hit costs nothing."
    )
    return _advice(
        row, "enable_cache", text, eligible=row.repeats, cost=row.repeats_cost_usd, then=ZERO
    )
