"""Anthropic Message Batches through the official SDK, driven by the simulator clock."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from llmops.simulator.testing import SimulatorHandle

MODEL = "claude-haiku-4-5"


def request(custom_id: str, content: str = "hi", **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": content}],
            **params,
        },
    }


@pytest.fixture
def slow_batches(sim: SimulatorHandle) -> SimulatorHandle:
    sim.config(
        batch_validating_s=0, batch_turnaround_s=100, batch_finalizing_s=5, batch_cancel_s=20
    )
    return sim


def test_message_batch_runs_to_the_end_and_serves_results(
    claude: anthropic.Anthropic, slow_batches: SimulatorHandle
) -> None:
    sim = slow_batches
    custom_ids = [f"item-{i}" for i in range(10)]
    batch = claude.messages.batches.create(requests=[request(c, content=c) for c in custom_ids])
    sim.advance(50)
    halfway = claude.messages.batches.retrieve(batch.id)
    sim.advance(55)
    ended = claude.messages.batches.retrieve(batch.id)
    results = list(claude.messages.batches.results(batch.id))

    assert batch.processing_status == "in_progress"
    assert batch.results_url is None
    assert (batch.expires_at - batch.created_at).total_seconds() == 86_400
    assert halfway.processing_status == "in_progress"
    assert halfway.request_counts.processing == 10
    assert halfway.request_counts.succeeded == 0
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 10
    assert ended.request_counts.processing == 0
    assert ended.ended_at is not None
    assert ended.results_url == (f"{sim.base_url}/anthropic/v1/messages/batches/{batch.id}/results")
    assert sorted(r.custom_id for r in results) == sorted(custom_ids)
    assert [r.custom_id for r in results] != custom_ids
    assert {r.result.type for r in results} == {"succeeded"}
    assert all(r.result.message.usage.output_tokens > 0 for r in results)
    assert sim.usage()["anthropic"][MODEL]["batch"]["requests"] == 10


def test_results_match_realtime_answers(claude: anthropic.Anthropic) -> None:
    realtime = claude.messages.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "same"}]
    )

    batch = claude.messages.batches.create(requests=[request("only", content="same")])
    [result] = list(claude.messages.batches.results(batch.id))

    assert result.result.message.content[0].text == realtime.content[0].text
    assert result.result.message.usage.input_tokens == realtime.usage.input_tokens


def test_results_before_the_end_are_unavailable(
    claude: anthropic.Anthropic, slow_batches: SimulatorHandle
) -> None:
    batch = claude.messages.batches.create(requests=[request("a")])

    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        claude.messages.batches.results(batch.id)
    with pytest.raises(anthropic.BadRequestError):
        claude.get(f"/v1/messages/batches/{batch.id}/results", cast_to=object)


def test_bad_params_end_as_errored_results_not_create_errors(
    claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    batch = claude.messages.batches.create(
        requests=[
            request("good"),
            request("zero", max_tokens=0),
            request("bad-model", model="claude-0"),
            request("streams", stream=True),
        ]
    )

    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}
    ended = claude.messages.batches.retrieve(batch.id)

    assert ended.request_counts.succeeded == 1
    assert ended.request_counts.errored == 3
    assert results["good"].type == "succeeded"
    assert results["zero"].type == "errored"
    assert results["zero"].error.error.type == "invalid_request_error"
    assert "max_tokens" in results["zero"].error.error.message
    assert results["bad-model"].error.error.type == "not_found_error"
    assert results["streams"].type == "errored"
    assert sim.usage()["anthropic"][MODEL]["batch"]["requests"] == 1


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests"),
        ([request("has space")], "custom_id"),
        ([request("x" * 65)], "custom_id"),
        ([request("dup"), request("dup")], "custom_id"),
        ([{"custom_id": "a"}], "params"),
    ],
)
def test_bad_envelopes_are_refused_at_create(
    claude: anthropic.Anthropic, requests: list, message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=message):
        claude.messages.batches.create(requests=requests)


def test_canceled_message_batch_keeps_finished_results(
    claude: anthropic.Anthropic, slow_batches: SimulatorHandle
) -> None:
    sim = slow_batches
    batch = claude.messages.batches.create(requests=[request(f"r{i}") for i in range(10)])
    sim.advance(30)

    canceling = claude.messages.batches.cancel(batch.id)
    sim.advance(20)
    ended = claude.messages.batches.retrieve(batch.id)
    results = list(claude.messages.batches.results(batch.id))

    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 10
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 3
    assert ended.request_counts.canceled == 7
    assert [r.result.type for r in results].count("succeeded") == 3
    assert [r.result.type for r in results].count("canceled") == 7
    assert sim.usage()["anthropic"][MODEL]["batch"]["requests"] == 3
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.batches.cancel(batch.id)


def test_message_batch_past_its_window_expires_unfinished_items(
    claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    sim.config(batch_turnaround_s=2 * 86_400)
    batch = claude.messages.batches.create(requests=[request(f"r{i}") for i in range(4)])

    sim.advance(86_400)
    ended = claude.messages.batches.retrieve(batch.id)
    results = {r.custom_id: r.result.type for r in claude.messages.batches.results(batch.id)}

    assert ended.processing_status == "ended"
    assert ended.ended_at == ended.expires_at
    assert ended.request_counts.succeeded == 2
    assert ended.request_counts.expired == 2
    assert sorted(results.values()) == ["expired", "expired", "succeeded", "succeeded"]


def test_batch_faults_expire_or_error_items(claude: anthropic.Anthropic, sim) -> None:
    sim.fault(provider="anthropic", kind="batch_expire", after_fraction=0.25, count=1)
    expiring = claude.messages.batches.create(requests=[request(f"r{i}") for i in range(8)])
    sim.fault(provider="anthropic", kind="batch_fail", count=1)
    failing = claude.messages.batches.create(requests=[request(f"r{i}") for i in range(3)])

    expired = claude.messages.batches.retrieve(expiring.id).request_counts
    failed = claude.messages.batches.retrieve(failing.id).request_counts
    failures = list(claude.messages.batches.results(failing.id))

    assert (expired.succeeded, expired.expired) == (2, 6)
    assert (failed.errored, failed.succeeded) == (3, 0)
    assert {r.result.error.error.type for r in failures} == {"api_error"}


def test_delete_works_only_once_the_batch_ended(
    claude: anthropic.Anthropic, slow_batches: SimulatorHandle
) -> None:
    batch = claude.messages.batches.create(requests=[request("a")])

    with pytest.raises(anthropic.BadRequestError):
        claude.messages.batches.delete(batch.id)
    slow_batches.advance(105)
    deleted = claude.messages.batches.delete(batch.id)

    assert deleted.id == batch.id
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve(batch.id)


def test_batch_list_pages_newest_first_until_done(claude: anthropic.Anthropic) -> None:
    ids = [claude.messages.batches.create(requests=[request("a")]).id for _ in range(5)]

    first = claude.messages.batches.list(limit=2)
    everything = [b.id for b in claude.messages.batches.list(limit=2)]
    before = claude.messages.batches.list(limit=2, before_id=ids[1])

    assert [b.id for b in first.data] == ids[::-1][:2]
    assert first.has_more is True
    assert first.last_id == ids[-2]
    assert everything == ids[::-1]
    assert [b.id for b in before.data] == ids[::-1][1:3]
