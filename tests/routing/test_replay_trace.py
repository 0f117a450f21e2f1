"""The savings replay (`manage.py replay_trace`): a trace through the real router and pricing on
a simulated clock. Expected figures are worked out by hand from the demo's price table (USD per
million tokens, input/output): gpt-4o-mini 0.15/0.60 (batch 0.075/0.30), gpt-4o 2.50/10,
gpt-4.1 2/8 (batch 1/4)."""

from __future__ import annotations

import gzip
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from routing.trace import trace_read

SHARED_TRACE = Path(__file__).resolve().parents[2] / "llmops" / "data" / "ecommerce-day.jsonl.gz"


def line(rid, t, workload, latency, deadline, tier, prompt, tokens_in, tokens_out, **extra):
    return {
        "id": rid,
        "t": t,
        "workload": workload,
        "latency_class": latency,
        "deadline_s": deadline,
        "tier": tier,
        "system_prompt_id": extra.pop("system", f"{workload}-sys"),
        "prompt_id": prompt,
        "input_tokens": tokens_in,
        "max_tokens": extra.pop("max_tokens", 100),
        "output_tokens": tokens_out,
        **extra,
    }


def search(rid, t, prompt="q1", **extra):
    # gpt-4o-mini, standard: 1000 * 0.15 + 100 * 0.60 per million = $0.00021
    return line(rid, t, "product-search", "realtime", 2, "economy", prompt, 1000, 100, **extra)


def review(rid, t, deadline=3600):
    # gpt-4o-mini: standard $0.00042 (2000 * 0.15 + 200 * 0.60), batch $0.00021
    return line(
        rid,
        t,
        "review-moderation",
        "near_realtime",
        deadline,
        "economy",
        rid,
        2000,
        200,
        max_tokens=300,
    )


def write(path: Path, rows: list, *, gzipped: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gzipped:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def replay(path: Path, *options: str) -> dict:
    out = io.StringIO()
    call_command("replay_trace", str(path), "--json", *options, stdout=out)
    return json.loads(out.getvalue())


def money(report: dict, name: str) -> Decimal:
    return Decimal(report[f"{name}_usd"])


@pytest.mark.django_db
def test_a_small_trace_costs_what_the_price_table_says_against_counterfactual_and_oracle(
    demo, tmp_path
):
    trace = write(
        tmp_path / "day.jsonl.gz",
        [
            search("s1", 0),  # realtime $0.00021, put in the cache (TTL 1 h)
            review("r1", 10),  # batch $0.00021 (counterfactual $0.00042)
            search("s2", 60),  # cache hit: $0; the oracle's too
            search("s3", 4000),  # the cached answer expired after 1 h: $0.00021; oracle $0
            search("s4", 4100, max_tokens=200),  # another key: $0.00021; oracle: a repeat, $0
            # Unknown workloads are routed by their labels with the default policy of their
            # latency class: overnight-batch has no premium model, so the demo's gpt-4.1
            # (batch 10,000 * 1 + 1,000 * 4 = $0.014; standard $0.028) ...
            line(
                "g1",
                5000,
                "gift-notes",
                "scheduled",
                86400,
                "premium",
                "g1",
                10_000,
                1_000,
                max_tokens=2_000,
            ),
            # ... and interactive's gpt-4o, realtime (1,000 * 2.5 + 100 * 10 = $0.0035).
            line("c1", 6000, "chat-helper", "realtime", 5, "standard", "c1", 1_000, 100),
        ],
        gzipped=True,
    )

    report = replay(trace)

    assert report["requests"] == 7
    assert report["modes"] == {"realtime": 4, "stream": 0, "flex": 0, "batch": 2, "cache": 1}
    assert money(report, "cost") == Decimal("0.00021") * 4 + Decimal("0.014") + Decimal("0.0035")
    assert money(report, "counterfactual") == (
        Decimal("0.00021") * 4 + Decimal("0.00042") + Decimal("0.028") + Decimal("0.0035")
    )
    assert money(report, "oracle") == Decimal("0.00021") * 2 + Decimal("0.014") + Decimal("0.0035")
    assert money(report, "savings") == Decimal("0.01442")
    assert money(report, "oracle_savings") == Decimal("0.01484")
    assert report["savings_ratio"] == "0.971698"  # 0.01442 / 0.01484
    assert report["oracle_modes"] == {"realtime": 2, "flex": 0, "batch": 2, "cache": 3}
    assert report["deadline_misses"] == 0
    workloads = report["workloads"]
    assert workloads["product-search"]["modes"]["cache"] == 1
    assert workloads["product-search"]["policy"] == "acme/interactive-economy"
    assert workloads["gift-notes"]["policy"] == "default for scheduled: acme/overnight-batch"
    assert workloads["gift-notes"]["models"] == ["sim-openai/gpt-4.1"]
    assert workloads["chat-helper"]["models"] == ["sim-openai/gpt-4o"]
    assert Decimal(workloads["gift-notes"]["cost_usd"]) == Decimal("0.014")
    assert sum(w["requests"] for w in workloads.values()) == 7


@pytest.mark.django_db
def test_repeats_within_the_ttl_are_cache_hits_and_no_cache_serves_them_again(demo, tmp_path):
    trace = write(tmp_path / "t.jsonl", [search(f"s{i}", i * 600) for i in range(8)])

    cached = replay(trace)
    uncached = replay(trace, "--no-cache")

    # Put at 0 s, hits until 3600 s; put again at 4200 s, a hit at 4800 s.
    assert cached["modes"]["cache"] == 6
    assert money(cached, "cost") == Decimal("0.00021") * 2
    assert uncached["modes"] == {"realtime": 8, "stream": 0, "flex": 0, "batch": 0, "cache": 0}
    assert money(uncached, "cost") == money(uncached, "counterfactual") == Decimal("0.00168")
    assert money(cached, "oracle") == money(uncached, "oracle") == Decimal("0.00021")


@pytest.mark.django_db
def test_a_batch_slower_than_promised_is_cancelled_at_a_poll_too_late_for_its_deadline(
    demo, tmp_path
):
    """Planned with the promised 10 min, the batch really takes 2 h. The running job is
    checked at each poll, and polls are up to 10 min apart: the first one after deadline -
    margin (3610 - 300 s) is at 3600 s, the cancel goes out at the next tick (3660 s) and the
    request is served realtime 50 s after its deadline."""
    trace = write(tmp_path / "t.jsonl", [review("r1", 10)])

    report = replay(trace, "--batch-actual", "2h")

    assert report["modes"]["realtime"] == 1
    assert report["escalated"] == 1
    assert report["cancelled_jobs"] == 1
    assert report["deadline_misses"] == 1
    assert money(report, "cost") == Decimal("0.00042")
    # Nothing can batch it in time when batches take 2 h: the oracle serves it now too.
    assert money(report, "oracle") == Decimal("0.00042")
    assert report["savings_ratio"] is None


@pytest.mark.django_db
def test_a_late_batch_is_escalated_in_time_when_its_deadline_leaves_room(demo, tmp_path):
    # Deadline 25 min: still deferred (5 min wait + 10 min + 5 min margin), cancelled at the
    # 1380 s poll (after 1510 - 300 s) and served at 1440 s, before its deadline.
    trace = write(tmp_path / "t.jsonl", [review("r1", 10, deadline=1500)])

    report = replay(trace, "--batch-actual", "2h")

    assert report["escalated"] == 1
    assert report["deadline_misses"] == 0
    assert money(report, "cost") == Decimal("0.00042")


@pytest.mark.django_db
def test_a_promised_turnaround_longer_than_the_deadline_is_served_now_as_a_missed_saving(
    demo, tmp_path
):
    trace = write(tmp_path / "t.jsonl", [review("r1", 10), review("r2", 20)])

    report = replay(trace, "--batch-turnaround", "2h")

    assert report["modes"]["realtime"] == 2
    assert report["missed_savings"] == 2
    assert report["deadline_misses"] == 0
    assert report["batch_turnaround"]["source"].startswith("--batch-turnaround 2 h")
    assert money(report, "cost") == money(report, "oracle") == Decimal("0.00084")


@pytest.mark.django_db
def test_what_if_options_change_the_policy_for_the_run(demo, tmp_path):
    trace = write(tmp_path / "t.jsonl", [review(f"r{i}", i) for i in range(1, 4)])

    batched = replay(trace)
    no_batch = replay(trace, "--no-batch")
    as_search = replay(trace, "--workload-policy", "review-moderation=interactive-economy")

    assert batched["modes"]["batch"] == 3
    assert batched["batch_jobs"] == 1
    assert money(batched, "cost") == Decimal("0.00063")
    assert no_batch["modes"]["realtime"] == 3
    assert money(no_batch, "cost") == Decimal("0.00126")
    assert as_search["workloads"]["review-moderation"]["policy"] == "acme/interactive-economy"
    assert as_search["modes"]["realtime"] == 3


@pytest.mark.django_db
def test_a_longer_max_wait_makes_fewer_batches(demo, tmp_path):
    trace = write(tmp_path / "t.jsonl", [review(f"r{i}", i * 120) for i in range(10)])

    assert replay(trace)["batch_jobs"] == 4  # the 5 min wait: a flush every few arrivals
    assert replay(trace, "--policy-max-wait", "30m")["batch_jobs"] == 1


@pytest.mark.django_db
def test_the_human_report_is_a_table_with_the_totals(demo, tmp_path):
    trace = write(tmp_path / "t.jsonl", [search("s1", 0), review("r1", 10)])
    out = io.StringIO()

    call_command("replay_trace", str(trace), stdout=out)

    text = out.getvalue()
    assert "workload" in text and "counterfactual" in text and "oracle" in text
    assert "review-moderation" in text
    assert "cost            $0.000420000000" in text
    assert "deadline misses 0" in text


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([search("s1", 0), "{not json"], "line 2: not JSON"),
        (
            [search("s1", 0), {k: v for k, v in search("s2", 1).items() if k != "tier"}],
            "line 2: missing tier",
        ),
        ([{**search("s1", 0), "latency_class": "soon"}], "line 1: unknown latency_class 'soon'"),
        ([{**search("s1", 0), "tier": "gold"}], "line 1: unknown tier 'gold'"),
        ([{**search("s1", 0), "input_tokens": -1}], "line 1: input_tokens must be a whole"),
        ([{**search("s1", 0), "t": 1e300}], "line 1: t must be a number of seconds"),
        ([{**search("s1", 0), "deadline_s": 0}], "line 1: deadline_s must be a positive number"),
        ([search("s1", 5), "", search("s2", 1)], "line 3: t 1 is before"),
        ([search("s1", 0), search("s1", 1)], "line 2: id 's1' appears twice"),
        (["[1, 2]"], "line 1: not a JSON object"),
        ([{**search("s1", 0), "output_tokens": 500}], "line 1: output_tokens 500 is above"),
    ],
)
@pytest.mark.django_db
def test_bad_input_is_a_command_error_naming_the_line(demo, tmp_path, rows, message):
    trace = write(tmp_path / "bad.jsonl", rows)

    with pytest.raises(CommandError, match=message):
        call_command("replay_trace", str(trace), stdout=io.StringIO())


@pytest.mark.django_db
def test_a_missing_file_an_empty_trace_and_an_unknown_policy_are_command_errors(demo, tmp_path):
    with pytest.raises(CommandError, match=r"cannot read .*nope\.jsonl"):
        call_command("replay_trace", str(tmp_path / "nope.jsonl"), stdout=io.StringIO())
    empty = write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(CommandError, match="no requests"):
        call_command("replay_trace", str(empty), stdout=io.StringIO())
    trace = write(tmp_path / "t.jsonl", [search("s1", 0)])
    with pytest.raises(CommandError, match="no routing policy called 'fastest'"):
        call_command("replay_trace", str(trace), "--workload-policy", "x=fastest")
    with pytest.raises(CommandError, match="not a duration"):
        call_command("replay_trace", str(trace), "--batch-actual", "soon")


def test_a_damaged_gzip_names_the_line_it_broke_at(tmp_path):
    whole = gzip.compress(("\n".join(json.dumps(search(f"s{i}", i)) for i in range(50))).encode())
    damaged = tmp_path / "cut.jsonl.gz"
    damaged.write_bytes(whole[: len(whole) // 2])

    with pytest.raises(ValueError, match=r"line \d+: the file is damaged"):
        list(trace_read(damaged))


@pytest.mark.django_db
def test_the_shared_trace_replays_with_every_request_accounted_for(demo):
    report = replay(SHARED_TRACE)

    assert report["requests"] == 30_000
    assert sum(report["modes"].values()) == 30_000
    assert set(report["workloads"]) == {
        "product-search",
        "review-moderation",
        "product-descriptions",
    }
    # The oracle is the cheapest way; llmops can only match it or cost more.
    assert money(report, "oracle") <= money(report, "cost") < money(report, "counterfactual")
    assert sum(Decimal(w["cost_usd"]) for w in report["workloads"].values()) == money(
        report, "cost"
    )
