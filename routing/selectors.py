"""Reads for the routing app. Everything a caller sees goes through team scoping here."""

from __future__ import annotations

from django.db.models import QuerySet

from routing.auth import KeyPrincipal
from routing.models import LlmModel, Request, Team, Workload


def teams_for(user) -> QuerySet[Team]:
    """The teams a caller may see: a key's team, a member's teams, or all for superusers."""
    if isinstance(user, KeyPrincipal):
        return Team.objects.filter(pk=user.api_key.team_id)
    if not getattr(user, "is_authenticated", False):
        return Team.objects.none()
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(members=user)


def workload_list(*, user) -> QuerySet[Workload]:
    return (
        Workload.objects.filter(team__in=teams_for(user))
        .select_related("team", "policy")
        .order_by("team__slug", "slug")
    )


def model_list() -> QuerySet[LlmModel]:
    return (
        LlmModel.objects.filter(enabled=True, provider__enabled=True)
        .select_related("provider")
        .order_by("tier", "provider__slug", "model_id")
    )


def request_list(
    *, user, status: str | None = None, workload: str | None = None
) -> QuerySet[Request]:
    qs = Request.objects.filter(team__in=teams_for(user)).select_related("team", "workload")
    if status:
        qs = qs.filter(status=status)
    if workload:
        qs = qs.filter(workload__slug=workload)
    return qs.order_by("-created_at")


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
