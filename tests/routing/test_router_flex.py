"""Issue 23 item 1, the router's part: a deferrable request is served now at OpenAI's flex tier
when its first model has a flex price, the policy allows flex and the deadline leaves room for
flex's p90 latency plus the margin: when a batch would be too slow, when the endpoint must answer
now, and when flex is no dearer than a batch on the same model (it is sooner)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from routing.router import ModelOption, PolicySpec, RouteInput, route

MIN = timedelta(minutes=1)
# gpt-5-mini: a flex price no dearer than its batch price; batches back in 10 min.
FLEXY = ModelOption(
    "oai", "gpt-5-mini", "economy", True, batch_turnaround=10 * MIN, flex_latency=MIN,
    flex_no_dearer=True,
)  # fmt: skip
PLAIN = ModelOption("oai", "gpt-4o-mini", "economy", True, batch_turnaround=10 * MIN)
POLICY = PolicySpec(tier="economy", allow_batch=False, allow_flex=True, deadline_margin=2 * MIN)


def ask(**facts) -> RouteInput:
    base = dict(
        latency_class="near_realtime", deadline=10 * MIN, policy=POLICY, chain=(FLEXY, PLAIN)
    )
    return RouteInput(**{**base, **facts})


def test_due_in_minutes_without_batch_is_served_at_flex():
    decision = route(ask())
    assert decision.mode == "flex"
    assert [m.model_id for m in decision.chain] == ["gpt-5-mini", "gpt-4o-mini"]
    assert "flex price" in decision.reason and "10 min deadline" in decision.reason
    assert not decision.missed_saving


def test_a_realtime_workload_is_never_served_at_flex():
    assert route(ask(latency_class="realtime", deadline=None)).mode == "realtime"


def test_the_policy_can_refuse_flex():
    decision = route(ask(policy=PolicySpec(tier="economy", allow_flex=False)))
    assert decision.mode == "realtime"


def test_a_deadline_shorter_than_flex_latency_plus_margin_is_served_at_standard():
    decision = route(ask(deadline=2 * MIN))  # needs 1 min p90 + 2 min margin
    assert decision.mode == "realtime"


def test_a_first_model_without_flex_price_is_not_swapped_for_one_with():
    decision = route(ask(chain=(PLAIN, FLEXY)))
    assert decision.mode == "realtime"
    assert decision.chain[0].model_id == "gpt-4o-mini"


def test_an_open_circuit_on_the_flex_model_leaves_it_out():
    broken = ModelOption("oai", "gpt-5-mini", "economy", True, circuit_open=True, flex_latency=MIN)
    other = ModelOption("ant", "claude-haiku", "economy", True)
    assert route(ask(chain=(broken, other))).mode == "realtime"


@pytest.mark.parametrize("stream", [False, True])
def test_sync_only_endpoints_serve_deferrable_requests_at_flex_not_at_full_price(stream):
    policy = PolicySpec(tier="economy", allow_batch=True, allow_flex=True)  # margin 5 min
    decision = route(ask(policy=policy, sync_only=True, stream=stream, deadline=60 * MIN))
    assert decision.mode == "flex"
    assert not decision.missed_saving


def test_sync_only_without_flex_is_a_missed_saving_that_says_why():
    policy = PolicySpec(tier="economy", allow_batch=True, allow_flex=True)
    decision = route(ask(policy=policy, sync_only=True, chain=(PLAIN,), deadline=60 * MIN))
    assert decision.mode == "realtime" and decision.missed_saving
    assert "no flex tier" in decision.reason


def test_flex_no_dearer_than_a_batch_that_could_make_it_is_preferred_for_being_sooner():
    policy = PolicySpec(tier="economy", allow_batch=True, allow_flex=True)
    decision = route(ask(policy=policy, deadline=24 * 60 * MIN))
    assert decision.mode == "flex"
    assert "no dearer than a batch" in decision.reason


def test_a_batch_stays_when_flex_is_dearer_than_it():
    dearer = ModelOption("oai", "o3", "economy", True, batch_turnaround=10 * MIN, flex_latency=MIN)
    policy = PolicySpec(tier="economy", allow_batch=True, allow_flex=True)
    decision = route(ask(policy=policy, chain=(dearer,), deadline=24 * 60 * MIN))
    assert decision.mode == "batch"


def test_flex_serves_when_the_batch_is_too_slow():
    policy = PolicySpec(tier="economy", allow_batch=True, allow_flex=True)
    slow = ModelOption(
        "oai", "gpt-5-mini", "economy", True, batch_turnaround=24 * 60 * MIN, flex_latency=MIN
    )
    decision = route(ask(policy=policy, chain=(slow,), deadline=60 * MIN))
    assert decision.mode == "flex"
    assert "miss the 1 h deadline" in decision.reason


def test_a_cache_hit_wins_over_flex():
    assert route(ask(cache_hit=True)).mode == "cache"
