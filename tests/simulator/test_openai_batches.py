"""OpenAI Files and Batch API through the official SDK, driven by the simulator clock."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from llmops.simulator.testing import SimulatorHandle

MODEL = "gpt-4o-mini"
ENDPOINT = "/v1/chat/completions"


def line(custom_id: str, content: str = "hi", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": MODEL, "messages": [{"role": "user", "content": content}], **body},
    }


def jsonl(lines: list[Any]) -> bytes:
    return "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode() + b"\n"


def submit(client: openai.OpenAI, lines: list[Any], **kwargs: Any):
    uploaded = client.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h", **kwargs
    )


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    raw = client.files.content(file_id).content
    return [json.loads(x) for x in raw.splitlines()]


@pytest.fixture
def slow_batches(sim: SimulatorHandle) -> SimulatorHandle:
    sim.config(
        batch_validating_s=10, batch_turnaround_s=100, batch_finalizing_s=5, batch_cancel_s=20
    )
    return sim


def test_files_are_uploaded_listed_read_and_deleted(oai: openai.OpenAI) -> None:
    data = jsonl([line("a")])

    created = oai.files.create(file=("input.jsonl", data), purpose="batch")
    listed = [f.id for f in oai.files.list(purpose="batch")]
    content = oai.files.content(created.id).content
    deleted = oai.files.delete(created.id)

    assert created.purpose == "batch"
    assert created.status == "processed"
    assert created.bytes == len(data)
    assert created.filename == "input.jsonl"
    assert created.expires_at == created.created_at + 30 * 86_400
    assert listed == [created.id]
    assert content == data
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(created.id)


def test_file_expiry_is_honoured(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    created = oai.files.create(
        file=("input.jsonl", jsonl([line("a")])),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )

    assert created.expires_at == created.created_at + 3600
    sim.advance(3601)
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(created.id)


def test_file_list_pages_with_after(oai: openai.OpenAI) -> None:
    ids = [oai.files.create(file=(f"{i}.jsonl", b"{}"), purpose="batch").id for i in range(5)]

    first = oai.files.list(limit=2, order="asc")
    everything = [f.id for f in oai.files.list(limit=2, order="asc")]

    assert [f.id for f in first.data] == ids[:2]
    assert first.has_more is True
    assert everything == ids


def test_batch_runs_to_completion_and_answers_every_custom_id(
    oai: openai.OpenAI, slow_batches: SimulatorHandle
) -> None:
    sim = slow_batches
    custom_ids = [f"req-{i}" for i in range(20)]
    batch = submit(oai, [line(c, content=c) for c in custom_ids], metadata={"job": "42"})

    assert batch.status == "validating"
    assert batch.request_counts.total == 20
    sim.advance(10 + 50)
    halfway = oai.batches.retrieve(batch.id)
    sim.advance(50)
    finalizing = oai.batches.retrieve(batch.id)
    sim.advance(5)
    done = oai.batches.retrieve(batch.id)

    assert halfway.status == "in_progress"
    assert halfway.request_counts.completed == 10
    assert halfway.output_file_id is None
    assert finalizing.status == "finalizing"
    assert done.status == "completed"
    assert done.completed_at == done.created_at + 10 + 100 + 5
    assert done.request_counts.completed == 20
    assert done.request_counts.failed == 0
    assert done.error_file_id is None
    assert done.metadata == {"job": "42"}
    assert done.model == MODEL
    output = read_lines(oai, done.output_file_id)
    assert sorted(o["custom_id"] for o in output) == sorted(custom_ids)
    assert [o["custom_id"] for o in output] != custom_ids  # not in input order
    for result in output:
        assert result["error"] is None
        assert result["response"]["status_code"] == 200
        assert result["response"]["body"]["object"] == "chat.completion"
    assert oai.files.retrieve(done.output_file_id).purpose == "batch_output"


def test_batch_answers_match_realtime_answers_and_bill_as_batch(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    realtime = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "same prompt"}]
    )

    batch = submit(oai, [line("only", content="same prompt")])

    assert batch.status == "completed"
    [result] = read_lines(oai, batch.output_file_id)
    body = result["response"]["body"]
    assert body["choices"][0]["message"]["content"] == realtime.choices[0].message.content
    assert body["usage"]["prompt_tokens"] == realtime.usage.prompt_tokens
    billed = sim.usage()["openai"][MODEL]
    assert billed["batch"]["output_tokens"] == realtime.usage.completion_tokens
    assert billed["batch"]["requests"] == 1
    assert billed["realtime"]["requests"] == 1


def test_bad_line_bodies_become_error_file_lines_with_status_400(oai: openai.OpenAI) -> None:
    batch = submit(
        oai,
        [
            line("good"),
            line("bad-tokens", max_tokens=0),
            {
                "custom_id": "bad-role",
                "method": "POST",
                "url": ENDPOINT,
                "body": {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
            },
        ],
    )

    assert batch.status == "completed"
    assert batch.request_counts.completed == 1
    assert batch.request_counts.failed == 2
    [ok] = read_lines(oai, batch.output_file_id)
    errors = {e["custom_id"]: e for e in read_lines(oai, batch.error_file_id)}
    assert ok["custom_id"] == "good"
    assert set(errors) == {"bad-tokens", "bad-role"}
    for error in errors.values():
        assert error["error"] is None
        assert error["response"]["status_code"] == 400
        assert error["response"]["body"]["error"]["type"] == "invalid_request_error"
    assert errors["bad-tokens"]["response"]["body"]["error"]["param"] == "max_tokens"


@pytest.mark.parametrize(
    ("lines", "code", "line_number"),
    [
        ([line("a"), line("b"), line("a")], "duplicate_custom_id", 3),
        (
            [line("a"), {**line("b"), "body": {**line("b")["body"], "model": "gpt-4o"}}],
            "mismatched_model",
            2,
        ),
        ([line("a"), "{oops"], "invalid_json_line", 2),
        ([line("a"), {**line("b"), "url": "/v1/embeddings"}], "invalid_url", 2),
        ([{**line("a"), "method": "GET"}], "invalid_method", 1),
        ([], "empty_file", None),
    ],
)
def test_invalid_input_files_fail_validation_with_line_numbers(
    oai: openai.OpenAI,
    slow_batches: SimulatorHandle,
    lines: list,
    code: str,
    line_number: int | None,
) -> None:
    batch = submit(oai, lines)
    assert batch.status == "validating"

    slow_batches.advance(10)
    failed = oai.batches.retrieve(batch.id)

    assert failed.status == "failed"
    assert failed.failed_at == failed.created_at + 10
    assert failed.output_file_id is None
    assert failed.error_file_id is None
    error = failed.errors.data[0]
    assert error.code == code
    assert error.line == line_number


def test_batch_create_refuses_bad_envelopes_with_400(oai: openai.OpenAI) -> None:
    uploaded = oai.files.create(file=("input.jsonl", jsonl([line("a")])), purpose="batch")
    other = oai.files.create(file=("notes.txt", b"x"), purpose="user_data")

    with pytest.raises(openai.BadRequestError, match="completion_window"):
        oai.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="1h")
    with pytest.raises(openai.BadRequestError, match="metadata"):
        oai.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={f"k{i}": "v" for i in range(17)},
        )
    with pytest.raises(openai.BadRequestError, match="metadata"):
        oai.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"k": "v" * 513},
        )
    with pytest.raises(openai.BadRequestError, match="purpose"):
        oai.batches.create(input_file_id=other.id, endpoint=ENDPOINT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        oai.batches.create(input_file_id="file-nope", endpoint=ENDPOINT, completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_nope")


def test_cancelled_openai_batch_keeps_finished_lines(
    oai: openai.OpenAI, slow_batches: SimulatorHandle
) -> None:
    sim = slow_batches
    custom_ids = [f"req-{i}" for i in range(10)]
    batch = submit(oai, [line(c, content=c) for c in custom_ids])
    sim.advance(10 + 40)

    cancelling = oai.batches.cancel(batch.id)
    sim.advance(19)
    still_cancelling = oai.batches.retrieve(batch.id)
    sim.advance(1)
    cancelled = oai.batches.retrieve(batch.id)

    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    assert still_cancelling.status == "cancelling"
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at == cancelling.cancelling_at + 20
    assert cancelled.request_counts.completed == 4
    output = read_lines(oai, cancelled.output_file_id)
    assert len(output) == 4
    assert {o["custom_id"] for o in output} < set(custom_ids)
    assert cancelled.error_file_id is None
    assert sim.usage()["openai"][MODEL]["batch"]["requests"] == 4
    with pytest.raises(openai.BadRequestError):
        oai.batches.cancel(batch.id)


def test_cancelling_during_validation_leaves_no_output(
    oai: openai.OpenAI, slow_batches: SimulatorHandle
) -> None:
    batch = submit(oai, [line("a"), line("b")])

    oai.batches.cancel(batch.id)
    slow_batches.advance(20)
    cancelled = oai.batches.retrieve(batch.id)

    assert cancelled.status == "cancelled"
    assert cancelled.request_counts.completed == 0
    assert cancelled.output_file_id is None
    assert cancelled.error_file_id is None


def test_batch_past_its_window_expires_with_partial_output(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(batch_validating_s=0, batch_turnaround_s=4 * 86_400)
    custom_ids = [f"req-{i}" for i in range(8)]
    batch = submit(oai, [line(c) for c in custom_ids])

    sim.advance(86_400)
    expired = oai.batches.retrieve(batch.id)

    assert expired.status == "expired"
    assert expired.expired_at == expired.expires_at == expired.created_at + 86_400
    assert expired.request_counts.completed == 2
    assert expired.request_counts.failed == 6
    finished = read_lines(oai, expired.output_file_id)
    unfinished = read_lines(oai, expired.error_file_id)
    assert len(finished) == 2
    assert len(unfinished) == 6
    assert {x["custom_id"] for x in finished + unfinished} == set(custom_ids)
    for item in unfinished:
        assert item["response"] is None
        assert item["error"]["code"] == "batch_expired"


def test_expire_fault_ends_the_batch_after_a_share_of_items(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="openai", kind="batch_expire", after_fraction=0.5, count=1)

    batch = submit(oai, [line(f"r{i}") for i in range(10)])

    assert batch.status == "expired"
    assert len(read_lines(oai, batch.output_file_id)) == 5
    codes = {x["error"]["code"] for x in read_lines(oai, batch.error_file_id)}
    assert codes == {"batch_expired"}
    assert sim.usage()["openai"][MODEL]["batch"]["requests"] == 5


def test_batch_fail_fault_fails_validation(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.fault(provider="openai", kind="batch_fail", count=1)

    failed = submit(oai, [line("a")])
    fine = submit(oai, [line("a")])

    assert failed.status == "failed"
    assert failed.errors.data
    assert fine.status == "completed"


def test_item_error_fault_turns_items_into_500_error_lines(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="openai", kind="batch_item_error", rate=0.5, seed=3)

    batch = submit(oai, [line(f"r{i}") for i in range(40)])

    errors = read_lines(oai, batch.error_file_id)
    assert 5 < batch.request_counts.failed < 35
    assert batch.request_counts.completed + batch.request_counts.failed == 40
    assert len(errors) == batch.request_counts.failed
    assert {e["response"]["status_code"] for e in errors} == {500}
    assert sim.usage()["openai"][MODEL]["batch"]["requests"] == batch.request_counts.completed


def test_batch_list_is_newest_first_and_auto_pagination_terminates(oai: openai.OpenAI) -> None:
    ids = [submit(oai, [line("a")]).id for _ in range(7)]

    page = oai.batches.list(limit=3)
    everything = [b.id for b in oai.batches.list(limit=3)]
    after = oai.batches.list(limit=3, after=ids[-3])

    assert [b.id for b in page.data] == ids[::-1][:3]
    assert page.has_more is True
    assert everything == ids[::-1]
    assert [b.id for b in after.data] == ids[::-1][3:6]
    with pytest.raises(openai.BadRequestError):
        oai.batches.list(limit=101)


def test_big_batches_work(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.config(output_tokens=4)
    lines = [line(f"r{i}", content=f"question {i}") for i in range(5_000)]

    batch = submit(oai, lines)

    assert batch.status == "completed"
    assert batch.request_counts.completed == 5_000
    assert len(read_lines(oai, batch.output_file_id)) == 5_000
    assert sim.usage()["openai"][MODEL]["batch"]["output_tokens"] == 20_000
