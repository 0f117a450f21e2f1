"""Which ledger entries a report covers: visible teams, a range of UTC days (named or not),
and optional workload, model and mode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import QuerySet

from billing.models import LedgerEntry
from routing.models import LlmModel, Mode, Team, Workload
from routing.selectors import readable_teams

# Longest range a report covers in one go (a daily chart of more is unreadable anyway).
MAX_RANGE_DAYS = 731
# Named ranges of UTC days, in the order the pages offer them. A report opens on the default:
# "this month" shows two days of figures on the 2nd.
RANGE_PRESETS = {
    "this_month": "This month",
    "last_month": "Last month",
    "last_30_days": "Last 30 days",
    "last_90_days": "Last 90 days",
}
ROLLING_DAYS = {"last_30_days": 30, "last_90_days": 90}  # ranges that end today
DEFAULT_RANGE = "last_30_days"
DEFAULT_RANGE_DAYS = ROLLING_DAYS[DEFAULT_RANGE]  # also the length before an `until` alone


class ScopeError(ValueError):
    """A filter names something the caller cannot see, or a range that makes no sense."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Scope:
    """Which entries a report covers: visible teams (narrowed to one if chosen), an inclusive
    range of UTC days, and optional workload, model and mode."""

    teams: QuerySet[Team]
    since: date
    until: date  # inclusive
    team: Team | None = None
    workload: Workload | None = None
    model: str = ""
    mode: str = ""
    preset: str | None = None  # the named range these days are (None: a custom range)

    @property
    def preset_label(self) -> str:
        return RANGE_PRESETS.get(self.preset or "", "")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after `until`."""
        return datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def query(self) -> dict[str, str]:
        """As query parameters (links that keep the filter)."""
        params = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        for name, value in (
            ("team", self.team.slug if self.team else ""),
            ("workload", self.workload.slug if self.workload else ""),
            ("model", self.model),
            ("mode", self.mode),
        ):
            if value:
                params[name] = value
        return params


def preset_bounds(preset: str, today: date) -> tuple[date, date]:
    """The first and last UTC day (inclusive) of a named range on `today`."""
    if preset == "this_month":
        return today.replace(day=1), today
    if preset == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    return today - timedelta(days=ROLLING_DAYS[preset] - 1), today


def _range(
    today: date, preset: str, since: date | None, until: date | None
) -> tuple[date, date, str | None]:
    """The days a report covers and the named range they are, if any. Explicit since/until
    win over a preset: one alone keeps its meaning and the other end is filled in."""
    if preset and preset not in RANGE_PRESETS:
        raise ScopeError("range", f"Must be one of {', '.join(RANGE_PRESETS)}.")
    if since is None and until is None:
        since, until = preset_bounds(preset or DEFAULT_RANGE, today)
    elif since is None:
        # The default's length, ending on the chosen day (never before the first date).
        since = until - timedelta(days=min(DEFAULT_RANGE_DAYS - 1, (until - date.min).days))
    elif until is None:
        until = max(since, today)
    if until >= date.max:
        raise ScopeError("until", f"Must be a day before {date.max}.")
    if since > until:
        raise ScopeError("since", f"The range starts ({since}) after it ends ({until}).")
    if (until - since).days + 1 > MAX_RANGE_DAYS:
        raise ScopeError("until", f"A report covers at most {MAX_RANGE_DAYS} days.")
    # Name the range when its days are a preset's, so a page that re-submits the dates of a
    # preset (its filter form does) still says which one it shows.
    wanted = preset or DEFAULT_RANGE
    for name in (wanted, *RANGE_PRESETS):
        if preset_bounds(name, today) == (since, until):
            return since, until, name
    return since, until, None


def scope_build(
    *,
    user,
    today: date,
    team: str = "",
    workload: str = "",
    model: str = "",
    mode: str = "",
    since: date | None = None,
    until: date | None = None,
    preset: str = "",
) -> Scope:
    """Turn validated filter values into a Scope, or raise ScopeError naming the field.
    The range: `since`/`until` when given, else the named `preset`, else the last 30 days.
    Names of other teams' workloads get the same answer as names that do not exist."""
    teams = readable_teams(user)
    chosen = None
    if team:
        chosen = teams.filter(slug=team).first()
        if chosen is None:
            raise ScopeError("team", f"You have no team {team!r}.")
        teams = teams.filter(pk=chosen.pk)
    since, until, named = _range(today, preset, since, until)
    chosen_workload = None
    if workload:
        found = list(Workload.objects.filter(team__in=teams, slug=workload).select_related("team"))
        if not found:
            raise ScopeError("workload", f"No workload {workload!r} in your teams.")
        if len(found) > 1:
            raise ScopeError("team", f"Several teams have a workload {workload!r}: pick a team.")
        chosen_workload = found[0]
    if model and not LlmModel.objects.filter(model_id=model).exists():
        raise ScopeError("model", f"No model {model!r}.")
    if mode and mode not in Mode.values:
        raise ScopeError("mode", f"Mode must be one of {', '.join(Mode.values)}.")
    return Scope(
        teams=teams,
        since=since,
        until=until,
        team=chosen,
        workload=chosen_workload,
        model=model,
        mode=mode,
        preset=named,
    )


def entries_for(scope: Scope) -> QuerySet[LedgerEntry]:
    entries = LedgerEntry.objects.filter(
        team__in=scope.teams, occurred_at__gte=scope.start, occurred_at__lt=scope.end
    )
    if scope.workload is not None:
        entries = entries.filter(workload=scope.workload)
    if scope.model:
        entries = entries.filter(model__model_id=scope.model)
    if scope.mode:
        entries = entries.filter(mode=scope.mode)
    return entries


def ledger_page_entries(scope: Scope) -> QuerySet[LedgerEntry]:
    """Newest first, with what a ledger row shows."""
    return (
        entries_for(scope)
        .select_related("team", "workload", "model__provider")
        .order_by("-occurred_at", "-id")
    )
