"""Issue 23 item 4: the savings replay knows flex and the cache rule that ignores the cap of an
answer that ended by itself; its oracle serves at flex where the model has a flex price and the
deadline is at least two minutes; `--cache-ttl` turns every policy's cache on. Prices by hand
(USD per million tokens, input/output): gpt-5-mini 0.25/2 (flex and batch 0.125/1),
gpt-4o-mini 0.15/0.60 (batch 0.075/0.30, no flex price)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import CommandError

from tests.routing.test_replay_trace import line, money, replay, search, write

pytestmark = pytest.mark.django_db


def triage(rid, t, deadline=300, prompt=None):
    # support-triage's chain: gpt-5-mini. 1000 in, 100 out: standard 0.00025 + 0.0002 =
    # $0.00045; flex $0.000225. Due in 5 min: shorter than the 10 min batch turnaround.
    return line(
        rid, t, "support-triage", "near_realtime", deadline, "economy", prompt or rid, 1000, 100,
        max_tokens=300,
    )  # fmt: skip


def test_due_in_minutes_on_a_flex_model_is_replayed_at_flex_as_the_oracle_does(demo, tmp_path):
    report = replay(write(tmp_path / "t.jsonl", [triage("a", 0), triage("b", 5)]))

    assert report["modes"]["flex"] == 2
    assert report["oracle_modes"]["flex"] == 2
    assert money(report, "cost") == money(report, "oracle") == Decimal("0.00045")
    assert money(report, "counterfactual") == Decimal("0.0009")
    assert report["savings_ratio"] == "1.000000"
    assert report["deadline_misses"] == 0


def test_a_deadline_too_short_for_flex_is_realtime_for_both(demo, tmp_path):
    # 90 s: below the oracle's two minutes and below flex's 1 min + the policy's 2 min margin.
    report = replay(write(tmp_path / "t.jsonl", [triage("a", 0, deadline=90)]))

    assert report["modes"]["realtime"] == 1 and report["oracle_modes"]["realtime"] == 1


def test_no_flex_what_if_serves_it_at_full_price(demo, tmp_path):
    report = replay(write(tmp_path / "t.jsonl", [triage("a", 0)]), "--no-flex")

    assert report["modes"]["realtime"] == 1
    assert report["what_if"]["no_flex"] is True
    assert money(report, "cost") == Decimal("0.00045")


def cut(rid, t):
    """A product-search repeat of q1 whose cap (99) cuts the 100-token answer."""
    return line(rid, t, "product-search", "realtime", 2, "economy", "q1", 1000, 99, max_tokens=99)


def test_a_repeat_with_a_larger_cap_hits_an_answer_that_ended_by_itself(demo, tmp_path):
    rows = [
        search("s1", 0, max_tokens=300),  # 100 tokens out of 300: ended by itself
        search("s2", 10, max_tokens=100),  # fits exactly: a hit
        cut("s3", 20),  # the answer would not fit: served, and cut at 99
        cut("s4", 30),  # ... and that cut answer serves the same cap
    ]
    report = replay(write(tmp_path / "t.jsonl", rows))

    assert report["modes"]["cache"] == 2
    assert report["modes"]["realtime"] == 2


def test_cache_ttl_turns_every_policys_cache_on(demo, tmp_path):
    rows = [triage("a", 0, prompt="same"), triage("b", 60, prompt="same")]
    plain = replay(write(tmp_path / "t.jsonl", rows))
    cached = replay(write(tmp_path / "t.jsonl", rows), "--cache-ttl", "1d")

    assert plain["modes"]["cache"] == 0  # flex-economy does not cache
    assert cached["modes"]["cache"] == 1
    assert cached["what_if"]["cache_ttl_s"] == 86400
    assert money(cached, "cost") == money(cached, "oracle") == Decimal("0.000225")


def test_cache_ttl_and_no_cache_contradict(demo, tmp_path):
    with pytest.raises(CommandError, match="contradict"):
        replay(write(tmp_path / "t.jsonl", [triage("a", 0)]), "--cache-ttl", "1h", "--no-cache")
