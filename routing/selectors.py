"""Reads for the routing app. Everything a caller sees goes through team scoping here."""

from __future__ import annotations

from datetime import timedelta
from operator import attrgetter

from django.core.cache import cache
from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.utils import timezone

from billing import selectors as billing_selectors
from llmops import rows
from llmops.stats import nearest_rank
from routing.auth import KeyPrincipal
from routing.config import policy_chain
from routing.models import (
    LatencyClass,
    LlmModel,
    Mode,
    PolicyModel,
    Request,
    RequestAttempt,
    RoutingPolicy,
    Team,
    Workload,
)


def teams_for(user) -> QuerySet[Team]:
    """The teams a caller may see: a key's team, a member's teams, or all for superusers."""
    if isinstance(user, KeyPrincipal):
        return Team.objects.filter(pk=user.api_key.team_id)
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(members=user)


def readable_teams(user) -> QuerySet[Team]:
    """The teams whose requests and figures a caller may read (billing pages, request pages):
    staff run the installation and read every team's, as they do in the admin; anyone else
    what teams_for gives. Writes stay with teams_for."""
    if getattr(user, "is_staff", False):
        return Team.objects.all()
    return teams_for(user)


def workload_list(*, user) -> QuerySet[Workload]:
    return (
        Workload.objects.filter(team__in=teams_for(user))
        .select_related("team", "policy")
        .order_by("team__slug", "slug")
    )


def playground_workloads(*, user) -> list[dict]:
    """The caller's enabled workloads with their model chains, for the playground's pickers."""
    workloads = (
        workload_list(user=user)
        .filter(enabled=True)
        .prefetch_related("policy__links__model__provider")
    )
    return [
        {
            "team": w.team.slug,
            "slug": w.slug,
            "description": w.description,
            "latency_class": w.latency_class,
            "deferrable": w.latency_class != LatencyClass.REALTIME and w.policy.allow_batch,
            "models": [
                link.model.model_id
                for link in sorted(w.policy.links.all(), key=lambda link: link.position)
                if link.model.enabled and link.model.provider.enabled
            ],
        }
        for w in workloads
    ]


def model_list() -> QuerySet[LlmModel]:
    return (
        LlmModel.objects.filter(enabled=True, provider__enabled=True)
        .select_related("provider")
        .order_by("tier", "provider__slug", "model_id")
    )


def model_named(model_id: str) -> LlmModel | None:
    """The enabled model a client names by its provider's id or its Azure deployment's name
    (the first added, if several providers serve it)."""
    named = model_list().filter(Q(model_id=model_id) | Q(deployment=model_id))
    return named.order_by("pk").first()


def models_for_team(team: Team) -> tuple[list[LlmModel], list[str]]:
    """What a team's clients may name as `model`: the enabled models of its enabled
    workloads' chains (every enabled model if one policy allows any), and its policies'
    aliases."""
    policies = list(RoutingPolicy.objects.filter(team=team, workloads__enabled=True).distinct())
    aliases = sorted({alias for policy in policies for alias in policy.aliases})
    models = model_list().order_by("model_id", "pk")
    if not any(policy.allow_any_model for policy in policies):
        models = models.filter(
            pk__in=PolicyModel.objects.filter(policy__in=policies).values("model_id")
        )
    seen, unique = set(), []
    for model in models:
        if model.model_id not in seen:
            seen.add(model.model_id)
            unique.append(model)
    return unique, aliases


def request_list(
    *,
    user,
    status: str | None = None,
    workload: str | None = None,
    teams: QuerySet[Team] | None = None,
) -> QuerySet[Request]:
    """The caller's requests, newest first (`teams`: a wider readable scope, for pages)."""
    qs = (
        Request.objects.filter(team__in=teams if teams is not None else teams_for(user))
        .select_related("team", "workload", "model__provider")
        .prefetch_related("attempts__model__provider")
        .annotate(**_COST)
    )
    if status:
        qs = qs.filter(status=status)
    if workload:
        qs = qs.filter(workload__slug=workload)
    return qs.order_by("-created_at")


# A request's cost is the sum of its ledger entries (a charge, or an estimate, and reversals).
_COST = {name: Sum(f"ledger_entries__{name}") for name in billing_selectors.REQUEST_COST_FIELDS}


def request_with_cost(request: Request) -> Request:
    return (
        Request.objects.select_related("team", "workload", "model__provider")
        .prefetch_related(_ATTEMPTS)
        .annotate(**_COST)
        .get(pk=request.pk)
    )


_ATTEMPTS = Prefetch("attempts", RequestAttempt.objects.select_related("model__provider"))


def request_cost_attached(request: Request) -> Request:
    """`request` as request_with_cost reads it, for a request whose row this thread has just
    written whole (its fields and related objects are in memory already): only its cost and
    its attempts are read, each in a statement built once, not in one join grouped by every
    column of four tables (the ORM's compiling of that cost ~2 ms per native answer)."""
    for name, total in billing_selectors.request_cost_totals(request.pk).items():
        setattr(request, name, total)
    attempts = sorted(
        rows.select(RequestAttempt, "request", request.pk), key=attrgetter("position")
    )
    # Their models are the request's chain's (memoized, with providers); one that no longer
    # is (the chain changed since) is read.
    known = {m.pk: m for m in (request.model, *policy_chain(request.workload.policy_id)) if m}
    for attempt in attempts:
        attempt.request = request
        if attempt.model_id in known:
            attempt.model = known[attempt.model_id]
        else:
            attempt.model = LlmModel.objects.select_related("provider").get(pk=attempt.model_id)
    # As a prefetch leaves them: request.attempts.all() answers from these.
    found = request.attempts.all()
    found._result_cache, found._prefetch_done = attempts, True
    request._prefetched_objects_cache = {
        **getattr(request, "_prefetched_objects_cache", {}),
        "attempts": found,
    }
    return request


def team_for_write(*, user, team_slug: str | None) -> Team:
    """The one team a write applies to: the key's, or the named one of a session user's."""
    teams = teams_for(user)
    if team_slug:
        team = teams.filter(slug=team_slug).first()
        if team is None:
            raise LookupError(f"you have no team {team_slug!r}")
        return team
    if isinstance(user, KeyPrincipal):
        return user.api_key.team
    mine = list(teams[:2])
    if len(mine) != 1:
        raise LookupError("you belong to several teams (or none): name one with `team`")
    return mine[0]


def workloads_with_cache_stats(workloads: QuerySet[Workload], *, days: int = 30):
    """Annotate each workload with requests served, cache lookups (requests whose policy
    consulted the cache) and cache hits over the last `days`: the hit rate is hits over
    lookups, as /metrics and the billing pages give it."""
    since = timezone.now() - timedelta(days=days)
    recent = Q(requests__created_at__gte=since, requests__status=Request.Status.COMPLETED)
    return workloads.annotate(
        _served=Count("requests", filter=recent),
        _lookups=Count("requests", filter=recent & Q(requests__cache_lookup=True)),
        _hits=Count("requests", filter=recent & Q(requests__mode=Mode.CACHE)),
    )


FLEX = "flex"  # RequestAttempt.service_tier of a call at OpenAI's flex tier
# The flex lane plans with the p90 latency of a model's recent flex calls once this many
# answered, else with its provider's expectation; re-read at most once a minute per process
# group (the router asks on every deferrable request).
FLEX_MIN_OBSERVATIONS = 5
FLEX_WINDOW = 100
FLEX_LATENCY_CACHE_SECONDS = 60


def expected_flex_latency(*, model: LlmModel) -> timedelta:
    """How long a flex call to this model is expected to take (p90 of its recent answered
    flex calls, else the provider's setting)."""
    key = f"llmops:flex-latency:{model.pk}"
    seconds = cache.get(key)
    if seconds is None:
        recent = list(
            RequestAttempt.objects.filter(
                model=model,
                service_tier=FLEX,
                outcome=RequestAttempt.Outcome.OK,
                latency_ms__isnull=False,
            )
            .order_by("-started_at")
            .values_list("latency_ms", flat=True)[:FLEX_WINDOW]
        )
        if len(recent) >= FLEX_MIN_OBSERVATIONS:
            seconds = nearest_rank(recent, 0.9) / 1000
        else:
            seconds = model.provider.expected_flex_latency.total_seconds()
        cache.set(key, seconds, FLEX_LATENCY_CACHE_SECONDS)
    return timedelta(seconds=seconds)
