"""The `/_sim` control API: config, clock, usage, reset."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from llmops.simulator.testing import SimulatorError, SimulatorHandle

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "Hello there"}]


def test_health_answers(sim: SimulatorHandle) -> None:
    assert sim._call("GET", "/_sim/health")["status"] == "ok"


def test_global_and_per_model_output_lengths_apply(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(output_tokens=7)
    sim.config(model="gpt-4o", output_tokens=11)
    sim.config(
        models={"gpt-4.1": {"output_tokens": None, "min_output_tokens": 3, "max_output_tokens": 3}}
    )

    default = oai.chat.completions.create(model=GPT, messages=HELLO)
    per_model = oai.chat.completions.create(model="gpt-4o", messages=HELLO)
    ranged = oai.chat.completions.create(model="gpt-4.1", messages=HELLO)

    assert default.usage.completion_tokens == 7
    assert per_model.usage.completion_tokens == 11
    assert ranged.usage.completion_tokens == 3
    assert sim.config()["models"]["gpt-4o"] == {"output_tokens": 11}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"ttft": 5}, "ttft"),
        ({"tokens_per_s": -1}, "tokens_per_s"),
        ({"batch_turnaround_s": "soon"}, "batch_turnaround_s"),
        ({"output_tokens": 0}, "output_tokens"),
        ({"min_output_tokens": 10, "max_output_tokens": 5}, "min_output_tokens"),
        ({"model": "gpt-0", "output_tokens": 5}, "gpt-0"),
        ({"models": {"gpt-4o": {"speed": 1}}}, "models.gpt-4o.speed"),
        ({"add_models": {"mistral": ["x"]}}, "mistral"),
        # Azure serves OpenAI's models under deployments: it has no catalogue to add to.
        ({"add_models": {"azure": ["x"]}}, "azure"),
        ({"azure_deployments": {"mine": "claude-haiku-4-5"}}, "azure_deployments.mine"),
        ({"model": "gpt-4o", "azure_deployments": {"mine": "gpt-4o"}}, "azure_deployments"),
        ({"enqueued_token_limit": 0}, "enqueued_token_limit"),
    ],
)
def test_bad_config_is_refused_naming_the_key_and_changes_nothing(
    sim: SimulatorHandle, settings: dict, named: str
) -> None:
    before = sim.config()

    with pytest.raises(SimulatorError) as caught:
        sim.config(**settings)

    assert caught.value.status == 400
    assert named in str(caught.value)
    assert sim.config() == before


def test_paced_streams_still_deliver_everything(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.config(ttft_ms=1, tokens_per_s=5000, output_tokens=20)

    chunks = list(oai.chat.completions.create(model=GPT, messages=HELLO, stream=True))

    assert sum(1 for c in chunks if c.choices[0].delta.content) == 20


def test_clock_moves_forward_only(sim: SimulatorHandle) -> None:
    start = sim.now()

    sim.advance(3600)

    assert sim.now() - start >= 3600
    with pytest.raises(SimulatorError, match="advance_s"):
        sim.advance(-1)


def test_reset_forgets_everything(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    uploaded = oai.files.create(file=("a.jsonl", b"{}"), purpose="batch")
    oai.chat.completions.create(model=GPT, messages=HELLO)
    sim.config(output_tokens=3)
    sim.fault(status=500, endpoint="models")
    sim.advance(100)

    sim.reset()

    assert sim.usage()["totals"]["requests"] == 0
    assert sim.faults() == []
    assert sim.config()["output_tokens"] is None
    assert abs(sim._call("GET", "/_sim/clock")["offset_s"]) == 0
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(uploaded.id)


def test_usage_equals_the_sum_of_what_the_sdks_saw(
    oai: openai.OpenAI, claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    seen = {"input": 0, "output": 0, "cached": 0, "requests": 0}

    def add(input_tokens: int, output_tokens: int, cached: int = 0) -> None:
        seen["input"] += input_tokens
        seen["output"] += output_tokens
        seen["cached"] += cached
        seen["requests"] += 1

    long_system = {"role": "system", "content": "policy " * 1200}
    for question in ("a", "b"):
        c = oai.chat.completions.create(
            model=GPT, messages=[long_system, {"role": "user", "content": question}]
        )
        add(
            c.usage.prompt_tokens,
            c.usage.completion_tokens,
            c.usage.prompt_tokens_details.cached_tokens,
        )
    final = list(
        oai.chat.completions.create(
            model=GPT, messages=HELLO, n=2, stream=True, stream_options={"include_usage": True}
        )
    )[-1]
    add(final.usage.prompt_tokens, final.usage.completion_tokens)
    m = claude.messages.create(model=CLAUDE, max_tokens=30, messages=HELLO)
    add(m.usage.input_tokens, m.usage.output_tokens)
    with claude.messages.stream(model=CLAUDE, max_tokens=30, messages=HELLO) as stream:
        s = stream.get_final_message()
    add(s.usage.input_tokens, s.usage.output_tokens)
    uploaded = oai.files.create(
        file=(
            "in.jsonl",
            json.dumps(
                {
                    "custom_id": "x",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": GPT, "messages": HELLO},
                }
            ).encode(),
        ),
        purpose="batch",
    )
    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    [line] = oai.files.content(batch.output_file_id).text.splitlines()
    batch_usage = json.loads(line)["response"]["body"]["usage"]
    add(batch_usage["prompt_tokens"], batch_usage["completion_tokens"])
    message_batch = claude.messages.batches.create(
        requests=[
            {
                "custom_id": "y",
                "params": {"model": CLAUDE, "max_tokens": 30, "messages": HELLO},
            }
        ]
    )
    [result] = list(claude.messages.batches.results(message_batch.id))
    add(result.result.message.usage.input_tokens, result.result.message.usage.output_tokens)
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=GPT, messages=HELLO, max_tokens=0)

    totals = sim.usage()["totals"]

    assert seen["cached"] > 0
    assert totals["requests"] == seen["requests"] == 7
    assert totals["input_tokens"] == seen["input"]
    assert totals["output_tokens"] == seen["output"]
    assert totals["cached_input_tokens"] == seen["cached"]
    usage = sim.usage()
    assert set(usage["openai"][GPT]) == {"realtime", "stream", "batch"}
    assert set(usage["anthropic"][CLAUDE]) == {"realtime", "stream", "batch"}
