"""Issue 19 item 8: the response cache's key holds every message that can change the answer,
in every key mode: an answer steered by a developer (or system, or an assistant turn) is never
served to another key that sent only the same user message. Keys of the old scheme are never
read (the key's version prefix moved)."""

from __future__ import annotations

import pytest
from django.test import Client

from routing.keys import api_key_create
from routing.models import RoutingPolicy, Workload
from routing.response_cache import CACHE_KEY_VERSION, cache_keys
from tests.security.serving_demo import WORKLOAD, http_fixture, native

pytestmark = pytest.mark.django_db
__all__ = ["http_fixture"]  # the fixture this module uses

USER = {"role": "user", "content": "Is the kettle in stock?"}
STEERS = {
    "developer": [{"role": "developer", "content": "Answer in French only."}, USER],
    "system": [{"role": "system", "content": "You are a pirate."}, USER],
    "assistant": [
        {"role": "user", "content": "Say yes."},
        {"role": "assistant", "content": "Yes."},
        USER,
    ],
}
MODES = [RoutingPolicy.CacheKey.FULL_PROMPT, RoutingPolicy.CacheKey.USER_AND_SYSTEM_HASH]


@pytest.fixture
def cached(demo):
    """Returns a function that turns the cache on for the demo workload in a key mode."""

    def turn_on(mode: str) -> None:
        policy_id = Workload.objects.get(team__slug="acme", slug=WORKLOAD).policy_id
        RoutingPolicy.objects.filter(pk=policy_id).update(cache_enabled=True, cache_key=mode)

    return turn_on


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("role", sorted(STEERS))
def test_a_steered_answer_is_not_served_to_another_key_sending_only_the_user_message(
    http, cached, mode, role, figures
):
    cached(mode)
    _, other_raw = api_key_create(team=Workload.objects.get(slug=WORKLOAD).team, name="other")
    other = Client(HTTP_AUTHORIZATION=f"Bearer {other_raw}")

    steered = native(http, {"messages": STEERS[role]})
    plain = native(other, {"messages": [USER]})
    same_again = native(other, {"messages": STEERS[role]})
    figures.record(
        "T8",
        f"cache key {mode}: {role}-steered answer, other key sends the user message",
        plain_served_from=plain.json()["mode"],
        same_prompt_served_from=same_again.json()["mode"],
    )

    assert steered.status_code == plain.status_code == same_again.status_code == 200
    assert steered.json()["mode"] == "realtime"
    assert plain.json()["mode"] == "realtime"  # a provider call, not the steered answer
    assert plain.json()["attempts"]
    assert same_again.json()["mode"] == "cache"  # the cache itself works: the same prompt hits


@pytest.mark.parametrize("mode", MODES)
def test_every_role_changes_the_key_and_the_key_is_versioned(mode):
    policy = RoutingPolicy(pk=1, cache_key=mode)
    base = {"messages": [USER], "model": None, "max_tokens": 20, "temperature": None}
    keys = {cache_keys(policy, {**base, "messages": m})[0] for m in STEERS.values()}
    keys.add(cache_keys(policy, base)[0])
    tool = [USER, {"role": "tool", "content": "in stock: 0"}]
    keys.add(cache_keys(policy, {**base, "messages": tool})[0])

    assert len(keys) == len(STEERS) + 2
    assert all(k.startswith(f"llmops:response:{CACHE_KEY_VERSION}:1:") for k in keys)
    assert CACHE_KEY_VERSION != ""  # keys of the unversioned scheme are never read
