"""Azure OpenAI Global Batch through the openai SDK: OpenAI's Batch API with Azure's rules
(one deployment per file, no BOM, line limits by file expiry, the enqueued-token quota)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from llmops.simulator.testing import SimulatorHandle

DEPLOYMENT = "llmops-gpt-4o-mini"
MODEL = "gpt-4o-mini"
FOURTEEN_DAYS = {"anchor": "created_at", "seconds": 14 * 86_400}
QUOTA_MESSAGE = (
    "The number of enqueued tokens has surpassed the configured limit of {limit} for the "
    "deployment '{deployment}'. Please either increase the limit or try again once the "
    "current jobs have finished."
)


def line(custom_id: str, content: str = "hi", deployment: str = DEPLOYMENT) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/chat/completions",
        "body": {"model": deployment, "messages": [{"role": "user", "content": content}]},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def submit(client: openai.OpenAI, data: bytes, *, expiring: bool = True, **kwargs: Any):
    extra = {"expires_after": FOURTEEN_DAYS} if expiring else {}
    uploaded = client.files.create(file=("input.jsonl", data), purpose="batch", **extra)
    return client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/chat/completions",
        completion_window="24h",
        **kwargs,
    )


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(x) for x in client.files.content(file_id).content.splitlines()]


def many_lines(count: int) -> bytes:
    # Cheap to build: one line, its custom_id changed.
    template = json.dumps(line("ID")).encode() + b"\n"
    return b"".join(template.replace(b'"ID"', b'"%d"' % i) for i in range(count))


@pytest.fixture
def slow_batches(sim: SimulatorHandle) -> SimulatorHandle:
    sim.config(
        batch_validating_s=10, batch_turnaround_s=100, batch_finalizing_s=5, batch_cancel_s=20
    )
    return sim


def test_a_batch_runs_by_deployment_and_bills_under_azure(
    azure: openai.OpenAI, oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    batch = submit(
        azure,
        jsonl([line(f"r{i}", f"question {i}") for i in range(3)]),
        output_expires_after=FOURTEEN_DAYS,
    )

    output = read_lines(azure, batch.output_file_id)
    realtime = azure.chat.completions.create(
        model=DEPLOYMENT, messages=[{"role": "user", "content": "question 1"}]
    )
    assert batch.status == "completed"
    assert batch.model == DEPLOYMENT
    assert batch.request_counts.completed == 3
    assert {o["custom_id"] for o in output} == {"r0", "r1", "r2"}
    answer = next(o for o in output if o["custom_id"] == "r1")["response"]["body"]
    assert answer["model"] == MODEL
    assert answer["choices"][0]["message"]["content"] == realtime.choices[0].message.content
    produced = azure.files.retrieve(batch.output_file_id)
    assert produced.expires_at == batch.created_at + FOURTEEN_DAYS["seconds"]
    assert sim.usage()["azure"][MODEL]["batch"]["requests"] == 3
    assert MODEL not in sim.usage()["openai"]
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve(batch.id)


def test_openai_style_endpoints_are_taken_too(azure: openai.OpenAI) -> None:
    lines = [{**line("a"), "url": "/v1/chat/completions"}]
    uploaded = azure.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")

    batch = azure.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    assert batch.status == "completed"


def test_time_moves_azure_batches(azure: openai.OpenAI, slow_batches: SimulatorHandle) -> None:
    batch = submit(azure, jsonl([line(f"r{i}") for i in range(4)]))
    slow_batches.advance(10 + 50)
    running = azure.batches.retrieve(batch.id)
    slow_batches.advance(50)
    finalizing = azure.batches.retrieve(batch.id)
    slow_batches.advance(5)
    done = azure.batches.retrieve(batch.id)

    assert batch.status == "validating"
    assert running.status == "in_progress"
    assert running.request_counts.completed == 2
    assert finalizing.status == "finalizing"
    assert done.status == "completed"
    assert [b.id for b in azure.batches.list()] == [batch.id]


def test_mixed_deployments_fail_naming_the_line(azure: openai.OpenAI) -> None:
    lines = [line("a"), line("b", deployment="llmops-gpt-5-mini"), line("c")]

    batch = submit(azure, jsonl(lines))

    error = batch.errors.data[0]
    assert batch.status == "failed"
    assert error.code == "model_mismatch"
    assert error.line == 2
    assert "line 2" in error.message


def test_an_unknown_deployment_fails_validation(azure: openai.OpenAI) -> None:
    batch = submit(azure, jsonl([line("a", deployment="nope")]))

    assert batch.status == "failed"
    assert batch.errors.data[0].code == "model_not_found"
    assert batch.errors.data[0].line == 1


def test_a_byte_order_mark_fails_validation(azure: openai.OpenAI) -> None:
    batch = submit(azure, b"\xef\xbb\xbf" + jsonl([line("a")]))

    assert batch.status == "failed"
    assert batch.errors.data[0].code == "invalid_json_line"
    assert "BOM" in batch.errors.data[0].message


def test_over_50000_lines_need_an_expiring_input_file(
    azure: openai.OpenAI, slow_batches: SimulatorHandle
) -> None:
    slow_batches.config(output_tokens=1)
    data = many_lines(50_001)

    refused = submit(azure, data, expiring=False)
    taken = submit(azure, data, expiring=True)
    slow_batches.advance(10)  # validation takes 10 s: then the one fails, the other runs
    refused = azure.batches.retrieve(refused.id)
    taken = azure.batches.retrieve(taken.id)

    assert refused.status == "failed"
    assert refused.errors.data[0].code == "too_many_tasks"
    assert taken.status == "in_progress"
    assert taken.request_counts.total == 50_001


def test_over_100000_lines_fail_even_with_an_expiring_file(azure: openai.OpenAI) -> None:
    batch = submit(azure, many_lines(100_001), expiring=True)

    assert batch.status == "failed"
    assert batch.errors.data[0].code == "too_many_tasks"
    assert "100000" in batch.errors.data[0].message


def test_the_enqueued_token_limit_refuses_what_would_overflow_the_queue(
    azure: openai.OpenAI, slow_batches: SimulatorHandle
) -> None:
    # "user: one two three four" is 6 tokens, 9 with the reply priming: two do not fit in 15.
    sim = slow_batches
    first = submit(azure, jsonl([line("a", "one two three four")]))
    sim.config(model=DEPLOYMENT, enqueued_token_limit=15)

    second = submit(azure, jsonl([line("b", "one two three four")]))
    other_deployment = submit(azure, jsonl([line("c", deployment=MODEL)]))
    sim.advance(10)
    running = azure.batches.retrieve(first.id)
    second = azure.batches.retrieve(second.id)
    other_deployment = azure.batches.retrieve(other_deployment.id)
    sim.advance(100 + 5)
    after_the_first = submit(azure, jsonl([line("d", "one two three four")]))
    sim.advance(10)
    after_the_first = azure.batches.retrieve(after_the_first.id)

    assert running.status == "in_progress"
    assert second.status == "failed"
    assert second.errors.data[0].code == "token_limit_exceeded"
    assert second.errors.data[0].line is None
    assert second.errors.data[0].message == QUOTA_MESSAGE.format(limit=15, deployment=DEPLOYMENT)
    assert other_deployment.status == "in_progress"
    assert after_the_first.status == "in_progress"


def test_a_global_enqueued_token_limit_applies_per_deployment(
    azure: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(enqueued_token_limit=5)

    batch = submit(azure, jsonl([line("a", "a question longer than five tokens")]))

    assert batch.status == "failed"
    assert batch.errors.data[0].message == QUOTA_MESSAGE.format(limit=5, deployment=DEPLOYMENT)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "token_limit_exceeded"},
        {"code": "token_limit_exceeded"},
        {"kind": "batch_fail", "code": "token_limit_exceeded"},
    ],
)
def test_a_fault_refuses_the_next_creates_for_the_token_quota(
    azure: openai.OpenAI, sim: SimulatorHandle, spec: dict
) -> None:
    sim.fault(provider="azure", endpoint="batches", count=2, **spec)

    refused = [submit(azure, jsonl([line(x)])) for x in ("a", "b")]
    taken = submit(azure, jsonl([line("c")]))

    assert [b.status for b in refused] == ["failed", "failed"]
    assert refused[0].errors.data[0].code == "token_limit_exceeded"
    assert (
        refused[0]
        .errors.data[0]
        .message.startswith("The number of enqueued tokens has surpassed the configured limit of")
    )
    assert taken.status == "completed"
    assert sim.faults()[0]["remaining"] == 0


def test_cancel_keeps_finished_lines_and_marks_the_rest_cancelled(
    azure: openai.OpenAI, slow_batches: SimulatorHandle
) -> None:
    sim = slow_batches
    custom_ids = [f"req-{i}" for i in range(10)]
    batch = submit(azure, jsonl([line(c, c) for c in custom_ids]))
    sim.advance(10 + 40)

    cancelling = azure.batches.cancel(batch.id)
    sim.advance(20)
    cancelled = azure.batches.retrieve(batch.id)

    output = read_lines(azure, cancelled.output_file_id)
    errors = read_lines(azure, cancelled.error_file_id)
    assert cancelling.status == "cancelling"
    assert cancelled.status == "cancelled"
    assert cancelled.request_counts.completed == len(output) == 4
    assert cancelled.request_counts.failed == len(errors) == 6
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert {o["custom_id"] for o in output} | {e["custom_id"] for e in errors} == set(custom_ids)
    assert sim.usage()["azure"][MODEL]["batch"]["requests"] == 4


def test_batch_faults_target_azure(azure: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.fault(provider="azure", kind="batch_item_error", rate=1.0)

    batch = submit(azure, jsonl([line("a"), line("b")]))

    assert batch.status == "completed"
    assert batch.request_counts.failed == 2
    assert {e["response"]["status_code"] for e in read_lines(azure, batch.error_file_id)} == {500}
