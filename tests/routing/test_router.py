"""The router is a pure function: each row is (facts → mode, chain, flags, words of the reason)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.router import (
    Decision,
    ModelOption,
    PolicySpec,
    RouteInput,
    RoutingError,
    human,
    route,
)

H = timedelta(hours=1)
MINI = ModelOption("oai", "gpt-4o-mini", "economy", True, batch_turnaround=timedelta(minutes=10))
GPT4O = ModelOption("oai", "gpt-4o", "standard", True, batch_turnaround=timedelta(minutes=10))
HAIKU = ModelOption("ant", "claude-haiku", "economy", True, batch_turnaround=timedelta(hours=2))
SONNET = ModelOption("ant", "claude-sonnet", "standard", True, batch_turnaround=timedelta(hours=2))
OPUS = ModelOption("ant", "claude-opus", "premium", True, batch_turnaround=timedelta(hours=2))
LOCAL = ModelOption("vllm", "llama", "economy", False)

CHAIN = (GPT4O, SONNET, MINI, HAIKU)
BATCH = PolicySpec(tier="standard", allow_batch=True, max_batch_wait=timedelta(minutes=10))


def names(decision: Decision) -> list[str]:
    return [m.model_id for m in decision.chain]


def ask(**facts) -> RouteInput:
    base = dict(latency_class="scheduled", deadline=24 * H, policy=BATCH, chain=CHAIN)
    return RouteInput(**{**base, **facts})


CASES = [
    # (id, input, mode, chain, missed_saving, words in the reason)
    (
        "realtime-is-served-now",
        ask(latency_class="realtime", deadline=None),
        "realtime",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "human waits",
    ),
    (
        "realtime-stream",
        ask(latency_class="realtime", deadline=None, stream=True),
        "stream",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "realtime",
    ),
    (
        "scheduled-defers-to-first-fitting-batch-model",
        ask(),
        "batch",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "oai/gpt-4o batch",
    ),
    (
        "a-stream-request-of-a-deferrable-workload-still-defers",
        ask(stream=True),
        "batch",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "deadline",
    ),
    (
        "near-realtime-defers-when-the-turnaround-fits",
        ask(latency_class="near_realtime", deadline=H),
        "batch",
        ["gpt-4o", "gpt-4o-mini"],
        False,
        "within 20 min",
    ),
    (
        "exactly-at-the-deadline-still-fits",
        ask(deadline=timedelta(minutes=25)),
        "batch",
        ["gpt-4o", "gpt-4o-mini"],
        False,
        "25 min",
    ),
    (
        "one-second-short-is-served-now",
        ask(deadline=timedelta(minutes=25) - timedelta(seconds=1)),
        "realtime",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        True,
        "miss",
    ),
    (
        "policy-without-batch-serves-now-without-missed-saving",
        ask(policy=replace(BATCH, allow_batch=False)),
        "realtime",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "does not allow batch",
    ),
    (
        "sync-only-endpoint-misses-the-saving",
        ask(sync_only=True),
        "realtime",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        True,
        "answers synchronously",
    ),
    (
        "no-batch-capable-provider",
        ask(chain=(LOCAL,)),
        "realtime",
        ["llama"],
        True,
        "batch-capable",
    ),
    (
        "unknown-turnaround-cannot-defer",
        ask(chain=(replace(GPT4O, batch_turnaround=None),)),
        "realtime",
        ["gpt-4o"],
        True,
        "unknown",
    ),
    (
        "open-circuit-goes-last-and-is-not-a-batch-target",
        ask(chain=(replace(GPT4O, circuit_open=True), SONNET)),
        "batch",
        ["claude-sonnet"],
        False,
        "circuit open",
    ),
    (
        "every-batch-circuit-open-serves-now",
        ask(
            chain=(replace(GPT4O, circuit_open=True), LOCAL), policy=replace(BATCH, tier="economy")
        ),
        "realtime",
        ["llama", "gpt-4o"],
        True,
        "circuit",
    ),
    (
        "tier-first-then-the-rest",
        ask(latency_class="realtime", policy=replace(BATCH, tier="economy")),
        "realtime",
        ["gpt-4o-mini", "claude-haiku", "gpt-4o", "claude-sonnet"],
        False,
        "realtime",
    ),
    (
        "no-fallback-across-tiers",
        ask(
            latency_class="realtime",
            policy=replace(BATCH, tier="economy", fallback_across_tiers=False),
        ),
        "realtime",
        ["gpt-4o-mini", "claude-haiku"],
        False,
        "realtime",
    ),
    (
        "a-tier-with-no-model-uses-the-chain",
        ask(latency_class="realtime", policy=replace(BATCH, tier="premium")),
        "realtime",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "no premium model",
    ),
    (
        "requested-model-goes-first",
        ask(latency_class="realtime", requested_model="claude-haiku"),
        "realtime",
        ["claude-haiku", "gpt-4o", "claude-sonnet", "gpt-4o-mini"],
        False,
        "client asked for claude-haiku first",
    ),
    (
        "disabled-models-are-left-out",
        ask(latency_class="realtime", chain=(replace(GPT4O, enabled=False), SONNET)),
        "realtime",
        ["claude-sonnet"],
        False,
        "realtime",
    ),
    (
        "all-circuits-open-tries-anyway",
        ask(
            latency_class="realtime",
            chain=(replace(GPT4O, circuit_open=True), replace(SONNET, circuit_open=True)),
        ),
        "realtime",
        ["gpt-4o", "claude-sonnet"],
        False,
        "trying anyway",
    ),
    (
        "cache-hit-wins",
        ask(cache_hit=True),
        "cache",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "cache",
    ),
    (
        "cache-hit-wins-over-a-soft-breach",
        ask(
            cache_hit=True,
            soft_budget_breached=True,
            policy=replace(BATCH, soft_breach_action="refuse"),
        ),
        "cache",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "cache",
    ),
    (
        "soft-breach-downgrades-a-tier",
        ask(latency_class="realtime", soft_budget_breached=True),
        "realtime",
        ["gpt-4o-mini", "claude-haiku", "gpt-4o", "claude-sonnet"],
        False,
        "downgraded standard to economy",
    ),
    (
        "soft-breach-downgrade-skips-an-empty-tier",
        ask(
            latency_class="realtime",
            soft_budget_breached=True,
            chain=(OPUS, MINI),
            policy=replace(BATCH, tier="premium"),
        ),
        "realtime",
        ["gpt-4o-mini", "claude-opus"],
        False,
        "premium to economy",
    ),
    (
        "soft-breach-with-nothing-cheaper-keeps-the-tier",
        ask(
            latency_class="realtime",
            soft_budget_breached=True,
            chain=(MINI,),
            policy=replace(BATCH, tier="economy"),
        ),
        "realtime",
        ["gpt-4o-mini"],
        False,
        "no tier cheaper",
    ),
    (
        "soft-breach-defer-defers-a-deferrable-workload",
        ask(
            soft_budget_breached=True,
            policy=replace(BATCH, allow_batch=False, soft_breach_action="defer"),
        ),
        "batch",
        ["gpt-4o", "claude-sonnet", "gpt-4o-mini", "claude-haiku"],
        False,
        "deferring to a batch",
    ),
    (
        "soft-breach-defer-on-a-realtime-workload-downgrades",
        ask(
            latency_class="realtime",
            soft_budget_breached=True,
            policy=replace(BATCH, soft_breach_action="defer"),
        ),
        "realtime",
        ["gpt-4o-mini", "claude-haiku", "gpt-4o", "claude-sonnet"],
        False,
        "downgraded",
    ),
]


@pytest.mark.parametrize(
    ("facts", "mode", "chain", "missed", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_router_decides(facts, mode, chain, missed, words):
    decision = route(facts)

    assert (decision.mode, names(decision), decision.missed_saving) == (mode, chain, missed)
    assert words.lower() in decision.reason.lower()
    assert not decision.refused


def test_a_soft_breach_the_policy_refuses_is_refused_with_a_reason():
    decision = route(
        ask(soft_budget_breached=True, policy=replace(BATCH, soft_breach_action="refuse"))
    )

    assert decision.refused
    assert "refuses" in decision.reason


@pytest.mark.parametrize(
    "facts",
    [
        ask(requested_model="gpt-5"),
        ask(requested_model="gpt-4o", chain=(replace(GPT4O, enabled=False), SONNET)),
        ask(chain=(replace(GPT4O, enabled=False),)),
        ask(chain=()),
    ],
    ids=["unknown-model", "disabled-requested-model", "nothing-enabled", "empty-chain"],
)
def test_no_usable_model_is_a_routing_error(facts):
    with pytest.raises(RoutingError):
        route(facts)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(seconds=45), "45 s"),
        (timedelta(minutes=25), "25 min"),
        (timedelta(hours=2, minutes=30), "2 h 30 min"),
        (timedelta(days=1, hours=2, minutes=3), "1 d 2 h"),
    ],
)
def test_durations_read_humanly(duration, text):
    assert human(duration) == text


options = st.builds(
    ModelOption,
    provider=st.sampled_from(["oai", "ant", "vllm"]),
    model_id=st.sampled_from(["a", "b", "c", "d", "e"]),
    tier=st.sampled_from(["economy", "standard", "premium"]),
    supports_batch=st.booleans(),
    enabled=st.booleans(),
    circuit_open=st.booleans(),
    batch_turnaround=st.none() | st.timedeltas(timedelta(0), timedelta(days=2)),
)
inputs = st.builds(
    RouteInput,
    latency_class=st.sampled_from(["realtime", "near_realtime", "scheduled"]),
    deadline=st.none() | st.timedeltas(timedelta(seconds=1), timedelta(days=3)),
    policy=st.builds(
        PolicySpec,
        tier=st.sampled_from(["economy", "standard", "premium"]),
        allow_batch=st.booleans(),
        soft_breach_action=st.sampled_from(["downgrade", "defer", "refuse"]),
        fallback_across_tiers=st.booleans(),
    ),
    chain=st.lists(options, max_size=5, unique_by=lambda m: (m.provider, m.model_id)).map(tuple),
    stream=st.booleans(),
    sync_only=st.booleans(),
    cache_hit=st.booleans(),
    soft_budget_breached=st.booleans(),
)


@given(inputs)
def test_any_decision_uses_only_enabled_models_and_batches_only_in_time(facts):
    try:
        decision = route(facts)
    except RoutingError:
        assert not any(m.enabled for m in facts.chain)
        return
    assert decision.chain and all(m.enabled for m in decision.chain)
    assert len(set(decision.chain)) == len(decision.chain)
    assert decision.reason
    if decision.mode == "batch":
        assert facts.latency_class != "realtime" and not facts.sync_only
        for model in decision.chain:
            assert model.supports_batch and not model.circuit_open
            wait = facts.policy.max_batch_wait + facts.policy.deadline_margin
            assert wait + model.batch_turnaround <= facts.deadline
    if facts.latency_class == "realtime" and not facts.cache_hit:
        assert decision.mode in ("realtime", "stream")


def test_the_same_facts_give_the_same_decision():
    assert route(ask()) == route(ask())
