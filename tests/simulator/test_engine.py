"""Pure parts of the simulator: text generation, token counting, prompt cache, batch timeline."""

from __future__ import annotations

import subprocess
import sys

from llmops.simulator.batches import Timeline, finish_order
from llmops.simulator.openai_batches import parse_input
from llmops.simulator.textgen import (
    PromptCache,
    count_tokens,
    generate,
    output_length,
    pieces,
    prompt_seed,
    tokens,
)


def test_generated_text_is_a_pure_function_of_the_seed() -> None:
    seed = prompt_seed("gpt-4o", "user: hi")

    first = generate(seed, wanted=40, max_tokens=None, stop=None)
    second = generate(seed, wanted=40, max_tokens=None, stop=None)

    assert first.text == second.text
    assert first.output_tokens == 40 == len(first.text.split(" "))
    assert "".join(pieces(first.text)) == first.text
    assert prompt_seed("gpt-4o", "user: hi") != prompt_seed("gpt-4o-mini", "user: hi")


def test_output_length_stays_in_bounds() -> None:
    lengths = {output_length(prompt_seed("m", str(i)), 16, 256) for i in range(2000)}

    assert min(lengths) >= 16
    assert max(lengths) <= 256
    assert len(lengths) > 100


def test_huge_answers_wrap_around_the_corpus() -> None:
    choice = generate(12345, wanted=200_000, max_tokens=None, stop=None)

    assert len(choice.text.split(" ")) == 200_000


def test_token_counting_splits_words_and_punctuation() -> None:
    assert count_tokens("Hello, world!") == 4
    assert tokens("a-b c") == ["a", "-", "b", "c"]
    assert count_tokens("") == 0


def test_openai_prefix_cache_reports_the_longest_seen_boundary() -> None:
    cache = PromptCache()
    shared = [f"w{i}" for i in range(1300)]

    assert cache.openai_cached_tokens("m", [*shared, "x"]) == 0
    assert cache.openai_cached_tokens("m", [*shared, "y"]) == 1280
    assert cache.openai_cached_tokens("m", shared[:1100]) == 1024
    assert cache.openai_cached_tokens("other", shared) == 0
    assert cache.openai_cached_tokens("m", shared[:1000]) == 0


def test_anthropic_cache_reads_the_longest_breakpoint_and_writes_the_rest() -> None:
    cache = PromptCache()
    segments = ["system: " + "a " * 100, "b " * 50, "user: hi"]

    assert cache.anthropic_cache("m", segments, [0]) == (0, 102)
    assert cache.anthropic_cache("m", segments, [0, 1]) == (102, 50)
    assert cache.anthropic_cache("m", segments, [0, 1]) == (152, 0)


def test_timeline_walks_through_its_phases() -> None:
    line = Timeline(
        created=1000, items=4, validating_s=10, turnaround_s=40, finalizing_s=5, cancel_s=3
    )

    assert line.at(1005).phase == "validating"
    assert (line.at(1010).phase, line.at(1010).done) == ("in_progress", 0)
    assert line.at(1020).done == 1
    assert line.at(1049.99).done == 3
    assert line.at(1050).phase == "finalizing"
    completed = line.at(1055)
    assert (completed.phase, completed.done, completed.ended_at) == ("completed", 4, 1055)


def test_cancel_freezes_progress_and_expiry_cuts_it() -> None:
    cancelled = Timeline(1000, 4, 0, 40, 5, 3, cancel_at=1025)
    expiring = Timeline(1000, 4, 0, 40, 5, 3, expire_after=1)

    assert cancelled.at(1026).phase == "cancelling"
    assert (cancelled.at(1028).phase, cancelled.at(1028).done) == ("cancelled", 2)
    assert expiring.at(1009).phase == "in_progress"
    assert (expiring.at(1010).phase, expiring.at(1010).done) == ("expired", 1)


def test_finish_order_is_a_stable_shuffle() -> None:
    order = finish_order(100, "batch_1")

    assert sorted(order) == list(range(100))
    assert order != list(range(100))
    assert order == finish_order(100, "batch_1")


def test_oversized_batch_inputs_fail_validation() -> None:
    models = {"gpt-4o-mini": 16_384}

    too_many = parse_input(b"{}\n" * 50_001, models)
    too_big = parse_input(b" " * (200 * 1024 * 1024 + 1), models)

    assert [e["code"] for e in too_many.errors] == ["too_many_requests"]
    assert [e["code"] for e in too_big.errors] == ["file_too_large"]
    assert too_many.requests == too_big.requests == []


def test_the_simulator_starts_without_django() -> None:
    code = (
        "import sys, llmops.simulator.server, llmops.simulator.testing; "
        "sys.exit(1 if 'django' in sys.modules else 0)"
    )

    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
