"""A provider's batch result line holding a number JSON cannot carry (NaN, Infinity: Python's
json reads and writes them, PostgreSQL's json refuses them, so does every client's parser) is
quarantined as an invalid item with that reason, never stored or silently changed, and the
lines around it are recorded as usual: before this, the chunk's transaction failed on
PostgreSQL, on every retry of the ingest."""

from __future__ import annotations

import io
import json

import pytest
from anthropic._models import construct_type
from anthropic.types.messages import MessageBatchIndividualResponse
from django.utils import timezone

from batches import services
from batches.models import BatchItem, BatchJob
from billing.models import Hold, LedgerEntry
from routing.models import Request
from routing.providers import anthropic_api, gemini_api, openai_api

pytestmark = pytest.mark.django_db


def ended_job(defer, sim) -> BatchJob:
    """Three deferred requests' job, its provider batch ended (not yet ingested)."""
    sim.config(batch_turnaround_s=3600)  # held until the test has ended it
    defer("review-moderation", 3)
    (job,) = services.batches_flush(force=True).jobs
    for _ in range(5):
        services.job_advance(job_id=job.pk)
        job.refresh_from_db()
        if job.status == BatchJob.Status.RUNNING:
            break
        BatchJob.objects.filter(pk=job.pk).update(next_check_at=timezone.now())
    assert job.status == BatchJob.Status.RUNNING
    sim.advance(4000)
    return job


def test_a_nan_in_an_answer_quarantines_that_line_only(defer, sim):
    job = ended_job(defer, sim)
    endpoint = job.provider.endpoint()
    with openai_api._batch_client(endpoint) as client:
        info = client.batches.retrieve(job.provider_batch_id)
        lines = client.files.content(info.output_file_id).text.splitlines()
        assert len(lines) == 3
        # The provider's answer, with a NaN where a number belongs (and -Infinity in another
        # line's refusal, which stores only its message and stays an error).
        hostile = json.loads(lines[0])
        hostile["response"]["body"]["choices"][0]["logprobs"] = {"score": float("nan")}
        lines[0] = json.dumps(hostile)
        tampered = client.files.create(
            file=("out.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="user_data"
        )
    BatchJob.objects.filter(pk=job.pk).update(
        status=BatchJob.Status.INGESTING,
        provider_status="completed",
        output_file_id=tampered.id,
        error_file_id="",
        next_check_at=timezone.now(),
    )

    services.job_advance(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == BatchJob.Status.COMPLETED and job.last_error == ""
    items = {i.custom_id: i for i in BatchItem.objects.filter(job=job)}
    bad = items.pop(hostile["custom_id"])
    assert bad.status == BatchItem.Status.INVALID
    assert bad.error == "unreadable result: NaN is not a number JSON can carry"
    request = Request.objects.get(pk=bad.request_id)
    assert request.status == Request.Status.FAILED and "NaN" in request.error
    assert request.answer in (None, {}) and not LedgerEntry.objects.filter(request=request)
    assert not Hold.objects.filter(request=request, status=Hold.Status.HELD).exists()
    for item in items.values():
        assert item.status == BatchItem.Status.SUCCEEDED
        answered = Request.objects.get(pk=item.request_id)
        assert answered.status == Request.Status.COMPLETED and answered.output
        assert LedgerEntry.objects.filter(request=answered).count() == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"x": NaN}', "NaN"),
        ('{"x": [1, {"y": -Infinity}]}', "-Infinity"),
        ('{"x": 1e999}', "Infinity"),  # a double's overflow reads as infinity
    ],
)
def test_gemini_result_lines_are_checked_the_same_way(body, reason):
    answer = (
        '{"key": "k", "response": {"candidates": [{"content": {"parts": [{"text": "hi"}], '
        '"role": "model"}, "finishReason": "STOP", "extra": %s}], '
        '"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, '
        '"totalTokenCount": 5}}}'
    )
    plain, hostile = (answer % "1").encode(), (answer % body).encode()

    (fine,) = gemini_api._lines(iter([plain]))
    (quarantined,) = gemini_api._lines(iter([hostile]))

    assert fine.outcome == "succeeded", fine.error
    assert (quarantined.custom_id, quarantined.outcome) == ("k", "invalid")
    assert quarantined.error == f"unreadable result: {reason} is not a number JSON can carry"


def test_an_anthropic_tool_input_with_nan_is_quarantined_not_nulled():
    """The SDK's decoder reads NaN and its JSON dump would write null in its place."""
    line = (
        '{"custom_id": "c", "result": {"type": "succeeded", "message": {"id": "msg_1", '
        '"type": "message", "role": "assistant", "model": "claude-haiku-4-5", "content": '
        '[{"type": "tool_use", "id": "toolu_1", "name": "score", "input": {"x": %s}}], '
        '"stop_reason": "tool_use", "stop_sequence": null, '
        '"usage": {"input_tokens": 5, "output_tokens": 7}}}}'
    )

    def outcome(value: str):
        item = construct_type(type_=MessageBatchIndividualResponse, value=json.loads(line % value))
        return anthropic_api._outcome(item)

    assert outcome("0.5").outcome == "succeeded"
    quarantined = outcome("NaN")
    assert (quarantined.custom_id, quarantined.outcome, quarantined.completion) == (
        "c",
        "invalid",
        None,
    )
    assert quarantined.error == "unreadable result: NaN is not a number JSON can carry"
