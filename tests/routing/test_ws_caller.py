"""Who a websocket handshake is: the API key's team, a browser session with an Origin, or
nobody (refused); and the figures a stream's `started` and `done` messages carry."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser, User

from billing.pricing import (
    ContextTier,
    PriceVersion,
    Rates,
    Usage,
    live_prices,
    price_usage,
    prompt_tokens_floor,
)
from llmops.simulator.textgen import count_tokens
from routing.auth import KeyPrincipal
from routing.consumers import caller_from_scope, stream_tokens_per_s


def scope(headers=(), user=None) -> dict:
    return {"headers": list(headers), "user": user or AnonymousUser()}


@pytest.mark.django_db
def test_a_bearer_key_in_the_header_is_its_team(api_key):
    key, raw = api_key
    caller = caller_from_scope(scope([(b"authorization", f"Bearer {raw}".encode())]))
    assert isinstance(caller.principal, KeyPrincipal)
    assert (caller.api_key, caller.user) == (key, None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header", [b"Bearer llm_not-a-key-0000000000", b"Basic YWJjOmRlZg==", b"Bearer a b"]
)
def test_a_bad_authorization_header_is_refused_even_with_a_session(header, api_key):
    user = User.objects.create_user("ana")
    headers = [(b"authorization", header), (b"origin", b"http://127.0.0.1")]
    assert caller_from_scope(scope(headers, user)) is None


@pytest.mark.django_db
def test_a_session_counts_only_with_an_origin():
    user = User.objects.create_user("ana")
    assert caller_from_scope(scope([(b"origin", b"http://127.0.0.1")], user)).user == user
    assert caller_from_scope(scope([], user)) is None
    assert caller_from_scope(scope([(b"origin", b"http://127.0.0.1")])) is None


# --- the stream's figures ----------------------------------------------------------------


def test_tokens_per_s_counts_the_tokens_after_the_first_delta_over_their_arrival():
    # 150 one-token deltas, one every 1/60 s: 149 intervals in 149/60 s.
    assert stream_tokens_per_s(visible_tokens=150, deltas=150, seconds=149 / 60) == 60.0
    # Several tokens a delta (Anthropic's text deltas): the first delta's share is left out.
    assert stream_tokens_per_s(visible_tokens=300, deltas=100, seconds=99 / 60) == 180.0


@pytest.mark.parametrize(("tokens", "deltas", "seconds"), [(1, 1, 0.0), (40, 1, 0.0), (5, 3, 0)])
def test_tokens_per_s_is_none_without_an_interval_to_measure(tokens, deltas, seconds):
    assert stream_tokens_per_s(visible_tokens=tokens, deltas=deltas, seconds=seconds) is None


@pytest.mark.parametrize(
    "content",
    [
        "Which sleeping bag for minus ten degrees, and why?",
        "  spaced\n\nout\t text  ",
        "don't stop: a-b-c, 1,000.5 $$$ ...",
        "",
    ],
)
def test_the_prompt_floor_is_never_above_a_token_count(content):
    messages = [{"role": "user", "content": content}]
    floor = prompt_tokens_floor(messages)
    assert floor == len(content.split())
    # The simulator's count (words and punctuation, as providers' tokenizers split them).
    assert floor <= count_tokens(content)


def test_the_prompt_floor_reads_text_parts_and_skips_the_rest():
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {"role": "assistant", "content": None},
    ]
    assert prompt_tokens_floor(messages) == 2 + 5


def version(rates: Rates, tiers=()) -> PriceVersion:
    return PriceVersion(
        id=1,
        model="m",
        processing="standard",
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
        rates=rates,
        tiers=tuple(tiers),
    )


ANTHROPIC = Rates(
    input=Decimal(3), cached_input=Decimal("0.3"), cache_write=Decimal("3.75"), output=Decimal(15)
)


def test_live_prices_take_the_cheapest_prompt_rate_and_the_output_rate():
    prompt, output = live_prices(version(ANTHROPIC), prompt_floor=1_000)
    assert (prompt, output) == (Decimal("0.0003"), Decimal(15))


@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=1_000, output_tokens=200),
        Usage(cached_input_tokens=1_000, output_tokens=200),
        Usage(cache_write_tokens=600, input_tokens=400, output_tokens=200),
        Usage(input_tokens=250_000, output_tokens=200),  # the real prompt reaches the dear tier
    ],
)
def test_the_live_cost_of_a_whole_answer_is_never_above_the_ledgers(usage):
    dear = Rates(
        input=Decimal(6),
        cached_input=Decimal("0.6"),
        cache_write=Decimal("7.5"),
        output=Decimal(22),
    )
    priced = version(ANTHROPIC, [ContextTier(200_000, dear)])
    prompt, output = live_prices(priced, prompt_floor=1_000)  # 1,000 words
    live = prompt + usage.output_tokens * output / Decimal(1_000_000)
    assert live <= price_usage(usage, priced).total


def test_live_prices_above_a_tier_use_its_rates():
    cheap_above = Rates(
        input=Decimal(1), cached_input=Decimal("0.1"), cache_write=Decimal(2), output=Decimal(5)
    )
    # A floor past the tier's threshold: the ledger must use the tier, and so does the floor.
    prompt, output = live_prices(
        version(ANTHROPIC, [ContextTier(100, cheap_above)]), prompt_floor=500
    )
    assert (prompt, output) == (Decimal("0.00005"), Decimal(5))
    # Below it, either may apply in the end: the cheaper of the two.
    prompt, output = live_prices(
        version(ANTHROPIC, [ContextTier(1_000, cheap_above)]), prompt_floor=500
    )
    assert (prompt, output) == (Decimal("0.00005"), Decimal(5))
