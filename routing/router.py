"""The routing decision: a pure function (no database, no network, no clock).

Per request: serve now (realtime, or stream if the client asked), serve now at OpenAI's flex
tier at its price (slower, about the batch price), defer to a provider batch at the batch
price, or answer from the cache; which models to try in order; and a
reason a person can read in the admin. The front door (routing/services.py) gathers the
facts (policy, chain, circuit states, budget state, batch turnaround) and records the result.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

TIERS = ("economy", "standard", "premium")  # cheapest first
REALTIME = "realtime"


class RoutingError(ValueError):
    """No decision is possible: the client's model is not usable, or nothing is enabled."""


@dataclass(frozen=True)
class ModelOption:
    provider: str  # provider slug
    model_id: str
    tier: str  # economy | standard | premium
    supports_batch: bool  # the provider has a batch API
    enabled: bool = True  # model and provider both enabled
    circuit_open: bool = False  # the provider's circuit breaker is open
    # Observed (or expected) batch completion time for this provider and model; None: unknown.
    batch_turnaround: timedelta | None = None
    # Observed p90 (or expected) latency of a flex call; None: this model cannot be served at
    # flex (no flex price, its provider has no flex tier, or the request is not deferrable).
    flex_latency: timedelta | None = None
    flex_no_dearer: bool = False  # its flex price is at most its batch price

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model_id}"


@dataclass(frozen=True)
class PolicySpec:
    tier: str = "standard"  # preferred tier
    allow_batch: bool = False
    allow_flex: bool = False
    max_batch_wait: timedelta = timedelta(minutes=10)  # buffer time before a flush
    deadline_margin: timedelta = timedelta(minutes=5)
    soft_breach_action: str = "downgrade"  # downgrade | defer | refuse
    fallback_across_tiers: bool = True

    @classmethod
    def of(cls, policy) -> PolicySpec:
        """From anything with these attributes (a routing.models.RoutingPolicy)."""
        return cls(**{f.name: getattr(policy, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class RouteInput:
    latency_class: str  # realtime | near_realtime | scheduled
    deadline: timedelta | None  # how long after arrival the answer must exist
    policy: PolicySpec
    chain: tuple[ModelOption, ...]  # the policy's chain, position order
    stream: bool = False
    requested_model: str | None = None  # the client's choice (a model id in the chain)
    sync_only: bool = False  # the endpoint must answer now (the OpenAI-compatible API)
    cache_hit: bool = False
    soft_budget_breached: bool = False


@dataclass(frozen=True)
class Decision:
    mode: str  # realtime | stream | batch | cache | flex
    chain: tuple[ModelOption, ...]  # in order; for batch, chain[0] is the batch target
    reason: str
    tier: str  # the tier actually used
    refused: bool = False  # a soft-budget breach the policy refuses
    missed_saving: bool = False  # deferrable workload served now at full price


def human(duration: timedelta) -> str:
    """2 h 30 min, 45 s, 1 d 2 h: short and exact enough for a reason string."""
    seconds = int(duration.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])


def _within(duration: timedelta) -> str:
    """human(), but "a second" for less: an observed flex p90 can be a few milliseconds."""
    return human(duration) if duration >= timedelta(seconds=1) else "a second"


def _cheaper(tier: str) -> str | None:
    index = TIERS.index(tier) if tier in TIERS else 1
    return TIERS[index - 1] if index > 0 else None


def _served_now_chain(inp: RouteInput, tier: str) -> tuple[tuple[ModelOption, ...], list[str]]:
    """The models to try now, in order, and notes for the reason."""
    notes = []
    enabled = [m for m in inp.chain if m.enabled]
    if not enabled:
        raise RoutingError("no enabled model in the policy's chain")
    in_tier = [m for m in enabled if m.tier == tier]
    if not in_tier:
        notes.append(f"No {tier} model in the chain: using the chain as it is")
        ordered = enabled
    elif inp.policy.fallback_across_tiers:
        ordered = in_tier + [m for m in enabled if m.tier != tier]
    else:
        ordered = in_tier
    if inp.requested_model:
        chosen = [m for m in enabled if m.model_id == inp.requested_model]
        if not chosen:
            raise RoutingError(f"model {inp.requested_model} is not an enabled model of the chain")
        if ordered[0] != chosen[0]:
            notes.append(f"The client asked for {inp.requested_model} first")
        ordered = chosen[:1] + [m for m in ordered if m != chosen[0]]
    # An open circuit goes last, not away: if every provider is down, a probe still happens.
    healthy = [m for m in ordered if not m.circuit_open]
    broken = [m for m in ordered if m.circuit_open]
    if broken and healthy:
        providers = sorted({m.provider for m in broken})
        notes.append(f"Circuit open for {', '.join(providers)}: {healthy[0].name} first")
    elif broken:
        notes.append("Every provider's circuit is open: trying anyway")
    return tuple(healthy + broken), notes


def _batch_chain(inp: RouteInput, served_now: tuple[ModelOption, ...]):
    """(models that can return a batch before the deadline, why not if none)."""
    if inp.deadline is None:
        return (), "the workload has no deadline"
    capable = [m for m in served_now if m.supports_batch]
    if not capable:
        return (), "no model in the chain has a batch-capable provider"
    healthy = [m for m in capable if not m.circuit_open]
    if not healthy:
        return (), "every batch-capable provider's circuit is open"
    known = [m for m in healthy if m.batch_turnaround is not None]
    if not known:
        return (), "the batch turnaround of its providers is unknown"
    overhead = inp.policy.max_batch_wait + inp.policy.deadline_margin
    fitting = tuple(m for m in known if overhead + m.batch_turnaround <= inp.deadline)
    if fitting:
        return fitting, ""
    quickest = min(known, key=lambda m: m.batch_turnaround)
    late = overhead + quickest.batch_turnaround - inp.deadline
    return (), (
        f"a batch on {quickest.name} would take up to {human(overhead + quickest.batch_turnaround)}"
        f" and miss the {human(inp.deadline)} deadline by {human(late)}"
    )


def _flex_target(inp: RouteInput, served_now: tuple[ModelOption, ...]):
    """(the model to serve at flex now, why not if none): the model that would be served
    first, if it has a flex price and a flex call fits the deadline with the margin. Only
    that one: flex makes the policy's choice cheaper, it does not choose another model."""
    first = served_now[0]
    if not inp.policy.allow_flex:
        return None, "the policy does not allow flex"
    if inp.deadline is None:
        return None, "the workload has no deadline"
    if first.flex_latency is None or first.circuit_open:
        return None, f"{first.name} has no flex tier"
    needed = first.flex_latency + inp.policy.deadline_margin
    if needed > inp.deadline:
        return None, (
            f"flex on {first.name} needs up to {human(needed)} with the margin, over the "
            f"{human(inp.deadline)} deadline"
        )
    return first, ""


def route(inp: RouteInput) -> Decision:
    """Decide how one request is served. Deterministic; raises RoutingError."""
    policy = inp.policy
    tier = policy.tier
    breach_notes = []
    want_defer = False
    if inp.soft_budget_breached and not inp.cache_hit:
        action = policy.soft_breach_action
        if action == "refuse":
            chain, _ = _served_now_chain(inp, tier)
            mode = "stream" if inp.stream else REALTIME
            return Decision(
                mode=mode,
                chain=chain,
                reason="A soft budget this request touches is over its limit and the policy "
                "refuses requests then.",
                tier=tier,
                refused=True,
            )
        if action == "defer" and inp.latency_class != REALTIME:
            want_defer = True
            breach_notes.append("Soft budget over its limit: deferring to a batch if possible")
        else:
            cheaper = _cheaper(tier)
            while cheaper and not any(m.enabled and m.tier == cheaper for m in inp.chain):
                cheaper = _cheaper(cheaper)
            if cheaper:
                breach_notes.append(f"Soft budget over its limit: downgraded {tier} to {cheaper}")
                tier = cheaper
            else:
                breach_notes.append(f"Soft budget over its limit: no tier cheaper than {tier}")

    served_now, notes = _served_now_chain(inp, tier)
    now_mode = "stream" if inp.stream else REALTIME

    def decide(mode, chain, reason, **extra) -> Decision:
        text = " ".join(
            part if part.endswith(".") else part + "." for part in [reason, *notes, *breach_notes]
        )
        return Decision(mode=mode, chain=chain, reason=text, tier=tier, **extra)

    if inp.cache_hit:
        return decide("cache", served_now, "Answered from the response cache")
    if inp.latency_class == REALTIME:
        return decide(now_mode, served_now, "Served now: a realtime workload (a human waits)")
    flex, flex_why_not = _flex_target(inp, served_now)

    def at_flex(why: str) -> Decision:
        return decide(
            "flex",
            served_now,  # chain[0] at flex; the rest, and it, at standard if flex is refused
            f"Served now at {flex.name}'s flex price: {why}; flex answers within "
            f"{_within(flex.flex_latency)} (p90), inside the {human(inp.deadline)} deadline",
        )

    deferrable = policy.allow_batch
    if not deferrable and not want_defer:
        if flex:
            return at_flex(f"the policy does not allow batch for this {inp.latency_class} workload")
        return decide(
            now_mode,
            served_now,
            f"Served now: the policy does not allow batch for this {inp.latency_class} workload",
        )
    if inp.sync_only:
        if flex:
            return at_flex("this endpoint answers synchronously, so no batch")
        return decide(
            now_mode,
            served_now,
            f"Served now at full price: this {inp.latency_class} workload could wait for a "
            f"batch, but the endpoint answers synchronously, and {flex_why_not} "
            "(missed saving)",
            missed_saving=True,
        )
    batch, why_not = _batch_chain(inp, served_now)
    if batch:
        target = batch[0]
        if flex and flex == target and flex.flex_no_dearer:
            return at_flex("no dearer than a batch on it, and sooner")
        expected = policy.max_batch_wait + target.batch_turnaround
        return decide(
            "batch",
            batch,
            f"Deferred to a {target.name} batch at the batch price: expected back within "
            f"{human(expected)}, inside the {human(inp.deadline)} deadline",
        )
    if flex:
        return at_flex(why_not)
    return decide(
        now_mode,
        served_now,
        f"Served now at full price (missed saving): {why_not}; {flex_why_not}",
        missed_saving=deferrable,
    )
