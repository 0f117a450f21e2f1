"""Gemini's File API and batch mode through the google-genai SDK, driven by the simulator
clock."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llmops.simulator.testing import SimulatorHandle

MODEL = "gemini-2.5-flash"
JobState = types.JobState


def request(text: str, **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if config:
        body["generationConfig"] = config
    return body


def inline(key: str, text: str = "hi", **config: Any) -> dict[str, Any]:
    """One inlined request as the SDK takes it."""
    return {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "metadata": {"key": key},
        **({"config": config} if config else {}),
    }


def upload_lines(client: genai.Client, lines: list[Any], name: str = "input") -> types.File:
    data = b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)
    return client.files.upload(
        file=io.BytesIO(data), config={"mime_type": "jsonl", "display_name": name}
    )


def results(client: genai.Client, batch: types.BatchJob) -> dict[str, dict[str, Any]]:
    """Every result of an ended batch, by key."""
    if batch.dest.file_name:
        raw = client.files.download(file=batch.dest.file_name)
        lines = [json.loads(x) for x in raw.splitlines()]
        return {x["key"]: x for x in lines}
    found = {}
    for item in batch.dest.inlined_responses:
        dumped = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        found[item.metadata["key"]] = dumped
    return found


@pytest.fixture
def slow_batches(sim: SimulatorHandle) -> SimulatorHandle:
    sim.config(batch_validating_s=10, batch_turnaround_s=100, batch_finalizing_s=5)
    return sim


def test_files_are_uploaded_read_listed_and_deleted(
    gemini: genai.Client, sim: SimulatorHandle
) -> None:
    uploaded = upload_lines(gemini, [{"key": "a", "request": request("hi")}])
    again = gemini.files.get(name=uploaded.name)
    listed = [f.name for f in gemini.files.list()]

    assert uploaded.name.startswith("files/")
    assert uploaded.display_name == "input"
    assert uploaded.mime_type == "jsonl"
    assert uploaded.state == types.FileState.ACTIVE
    assert uploaded.size_bytes == again.size_bytes > 0
    assert listed == [uploaded.name]
    with pytest.raises(genai_errors.ClientError):
        gemini.files.download(file=uploaded.name)  # uploads cannot be downloaded
    gemini.files.delete(name=uploaded.name)
    with pytest.raises(genai_errors.ClientError) as caught:
        gemini.files.get(name=uploaded.name)
    assert caught.value.code == 403


def test_uploads_expire_after_48_hours(gemini: genai.Client, sim: SimulatorHandle) -> None:
    uploaded = upload_lines(gemini, [{"key": "a", "request": request("hi")}])

    sim.advance(48 * 3600)

    with pytest.raises(genai_errors.ClientError):
        gemini.files.get(name=uploaded.name)


def test_a_big_upload_goes_in_chunks(gemini: genai.Client) -> None:
    line = {"key": "k", "request": request("x" * 1000)}
    lines = [line] * 9_000  # about 9 MB: two 8 MB chunks

    uploaded = upload_lines(gemini, lines)

    assert uploaded.size_bytes > 8 * 1024 * 1024


def test_file_list_pages(gemini: genai.Client) -> None:
    names = [upload_lines(gemini, [{"key": "a", "request": request("hi")}]).name for _ in range(5)]

    pages = gemini.files.list(config={"page_size": 2})

    assert [f.name for f in pages] == list(reversed(names))


def test_an_inline_batch_succeeds_with_the_realtime_answers(
    gemini: genai.Client, sim: SimulatorHandle
) -> None:
    batch = gemini.batches.create(
        model=MODEL,
        src=[inline("r1", "first question"), inline("r2", "second question")],
        config={"display_name": "llmops-job-1-0"},
    )
    realtime = gemini.models.generate_content(model=MODEL, contents="second question")

    found = results(gemini, batch)
    assert batch.name.startswith("batches/")
    assert batch.display_name == "llmops-job-1-0"
    assert batch.model == f"models/{MODEL}"
    assert batch.state == JobState.JOB_STATE_SUCCEEDED
    assert batch.end_time is not None
    assert [r.metadata["key"] for r in batch.dest.inlined_responses] == ["r1", "r2"]
    answer = batch.dest.inlined_responses[1].response
    assert answer.text == realtime.text
    assert set(found) == {"r1", "r2"}
    billed = sim.usage()["gemini"][MODEL]["batch"]
    assert billed["requests"] == 2
    assert billed["output_tokens"] == sum(
        r.response.usage_metadata.candidates_token_count for r in batch.dest.inlined_responses
    )


def test_a_file_batch_succeeds_with_a_results_file(
    gemini: genai.Client, sim: SimulatorHandle
) -> None:
    uploaded = upload_lines(
        gemini,
        [
            {"key": "a", "request": request("alpha")},
            {"key": "b", "request": request("beta", maxOutputTokens=100_000)},
            {"key": "c", "request": request("gamma", maxOutputTokens=5)},
        ],
    )

    batch = gemini.batches.create(model=MODEL, src=uploaded.name, config={"display_name": "f"})

    found = results(gemini, batch)
    assert batch.state == JobState.JOB_STATE_SUCCEEDED
    assert batch.dest.file_name.startswith("files/batch-")
    assert set(found) == {"a", "b", "c"}
    assert found["a"]["response"]["candidates"][0]["finishReason"] == "STOP"
    assert found["c"]["response"]["usageMetadata"]["candidatesTokenCount"] == 5
    assert found["b"]["error"]["code"] == 400
    assert found["b"]["error"]["status"] == "INVALID_ARGUMENT"
    assert "maxOutputTokens" in found["b"]["error"]["message"]
    assert sim.usage()["gemini"][MODEL]["batch"]["requests"] == 2
    generated = gemini.files.get(name=batch.dest.file_name)
    assert generated.source == types.FileSource.GENERATED
    assert generated.download_uri


def test_a_results_file_streams_from_the_download_url(
    gemini: genai.Client, sim: SimulatorHandle
) -> None:
    uploaded = upload_lines(gemini, [{"key": f"k{i}", "request": request("hi")} for i in range(3)])
    batch = gemini.batches.create(model=MODEL, src=uploaded.name)
    url = f"{sim.gemini_base_url}/download/v1beta/{batch.dest.file_name}:download"

    with httpx2.stream(
        "GET", url, params={"alt": "media"}, headers={"x-goog-api-key": "sim"}
    ) as response:
        keys = [json.loads(line)["key"] for line in response.iter_lines() if line]

    assert response.status_code == 200
    assert sorted(keys) == ["k0", "k1", "k2"]


def test_batch_stats_come_as_the_api_sends_them(sim: SimulatorHandle, gemini: genai.Client) -> None:
    batch = gemini.batches.create(model=MODEL, src=[inline("a"), inline("b", max_output_tokens=0)])

    raw = httpx2.get(
        f"{sim.gemini_base_url}/v1beta/{batch.name}", headers={"x-goog-api-key": "sim"}
    ).json()

    assert raw["done"] is True
    assert raw["metadata"]["@type"].endswith(".GenerateContentBatch")
    assert raw["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert raw["metadata"]["batchStats"] == {
        "requestCount": "2",
        "successfulRequestCount": "1",
        "failedRequestCount": "1",
        "pendingRequestCount": "0",
    }
    assert raw["response"]["inlinedResponses"] == raw["metadata"]["output"]["inlinedResponses"]


def test_states_follow_the_clock(gemini: genai.Client, slow_batches: SimulatorHandle) -> None:
    sim = slow_batches
    batch = gemini.batches.create(model=MODEL, src=[inline(f"r{i}") for i in range(4)])
    sim.advance(10 + 50)
    running = gemini.batches.get(name=batch.name)
    sim.advance(50)
    finalizing = gemini.batches.get(name=batch.name)
    sim.advance(5)
    done = gemini.batches.get(name=batch.name)

    assert batch.state == JobState.JOB_STATE_PENDING
    assert batch.dest is None
    assert running.state == JobState.JOB_STATE_RUNNING
    assert running.dest is None
    assert finalizing.state == JobState.JOB_STATE_RUNNING
    assert done.state == JobState.JOB_STATE_SUCCEEDED
    assert len(done.dest.inlined_responses) == 4
    assert sim.usage()["gemini"][MODEL]["batch"]["requests"] == 4


@pytest.mark.parametrize("by_file", [False, True])
def test_cancel_keeps_what_finished(
    gemini: genai.Client, slow_batches: SimulatorHandle, by_file: bool
) -> None:
    sim = slow_batches
    keys = [f"r{i}" for i in range(10)]
    if by_file:
        src: Any = upload_lines(gemini, [{"key": k, "request": request(k)} for k in keys]).name
    else:
        src = [inline(k, k) for k in keys]
    batch = gemini.batches.create(model=MODEL, src=src)
    sim.advance(10 + 40)

    gemini.batches.cancel(name=batch.name)
    cancelled = gemini.batches.get(name=batch.name)
    sim.advance(100)
    later = gemini.batches.get(name=batch.name)

    found = results(gemini, cancelled)
    assert cancelled.state == JobState.JOB_STATE_CANCELLED
    assert later.state == JobState.JOB_STATE_CANCELLED
    assert len(found) == 4
    assert set(found) < set(keys)
    assert all("response" in r for r in found.values())
    assert sim.usage()["gemini"][MODEL]["batch"]["requests"] == 4
    with pytest.raises(genai_errors.ClientError) as caught:
        gemini.batches.cancel(name=batch.name)
    assert caught.value.status == "FAILED_PRECONDITION"


def test_a_batch_past_its_48_hour_window_expires_with_partial_results(
    gemini: genai.Client, sim: SimulatorHandle
) -> None:
    sim.config(batch_validating_s=0, batch_turnaround_s=4 * 86_400)
    batch = gemini.batches.create(model=MODEL, src=[inline(f"r{i}") for i in range(8)])

    sim.advance(86_400)
    running = gemini.batches.get(name=batch.name)
    sim.advance(86_400)
    expired = gemini.batches.get(name=batch.name)

    assert running.state == JobState.JOB_STATE_RUNNING
    assert expired.state == JobState.JOB_STATE_EXPIRED
    assert len(expired.dest.inlined_responses) == 4


def test_an_expire_fault_ends_the_batch_early(gemini: genai.Client, sim: SimulatorHandle) -> None:
    sim.fault(provider="gemini", kind="batch_expire", after_fraction=0.5)

    batch = gemini.batches.create(model=MODEL, src=[inline(f"r{i}") for i in range(6)])

    assert batch.state == JobState.JOB_STATE_EXPIRED
    assert len(batch.dest.inlined_responses) == 3


def test_item_faults_and_refused_requests_become_error_results(
    gemini: genai.Client, sim: SimulatorHandle
) -> None:
    sim.fault(provider="gemini", kind="batch_item_error", rate=1.0, count=1)

    faulted = gemini.batches.create(model=MODEL, src=[inline("a"), inline("b")])
    refused = gemini.batches.create(
        model=MODEL, src=[inline("ok"), inline("bad", max_output_tokens=70_000)]
    )

    assert {r.error.code for r in faulted.dest.inlined_responses} == {500}
    bad = {r.metadata["key"]: r for r in refused.dest.inlined_responses}
    assert bad["ok"].response.text
    assert bad["bad"].error.code == 400
    assert refused.state == JobState.JOB_STATE_SUCCEEDED


def test_a_malformed_input_file_fails_the_batch(gemini: genai.Client) -> None:
    uploaded = upload_lines(gemini, [{"key": "a", "request": request("hi")}, b"not json"])

    batch = gemini.batches.create(model=MODEL, src=uploaded.name)

    assert batch.state == JobState.JOB_STATE_FAILED
    assert batch.dest is None


def test_a_fail_fault_fails_the_batch(gemini: genai.Client, sim: SimulatorHandle) -> None:
    sim.fault(provider="gemini", endpoint="batches", kind="batch_fail", message="no capacity")

    batch = gemini.batches.create(model=MODEL, src=[inline("a")])

    raw = httpx2.get(
        f"{sim.gemini_base_url}/v1beta/{batch.name}", headers={"x-goog-api-key": "sim"}
    ).json()
    assert batch.state == JobState.JOB_STATE_FAILED
    assert raw["error"]["message"] == "no capacity"
    assert sim.usage()["gemini"] == {}


def test_creates_are_checked(gemini: genai.Client, sim: SimulatorHandle) -> None:
    with pytest.raises(genai_errors.ClientError) as unknown_model:
        gemini.batches.create(model="gemini-0-nope", src=[inline("a")])
    with pytest.raises(genai_errors.ClientError) as missing_file:
        gemini.batches.create(model=MODEL, src="files/nope")
    too_big = httpx2.post(
        f"{sim.gemini_base_url}/v1beta/models/{MODEL}:batchGenerateContent",
        headers={"x-goog-api-key": "sim"},
        content=b"{" + b" " * (20 * 1024 * 1024) + b"}",
    )

    assert unknown_model.value.code == 404
    assert missing_file.value.code == 404
    assert too_big.status_code == 400
    assert "payload size exceeds the limit" in too_big.json()["error"]["message"]


def test_batches_are_listed_newest_first_and_deleted(gemini: genai.Client) -> None:
    names = [gemini.batches.create(model=MODEL, src=[inline("a")]).name for _ in range(3)]

    listed = [b.name for b in gemini.batches.list(config={"page_size": 2})]
    gemini.batches.delete(name=names[0])

    assert listed == list(reversed(names))
    with pytest.raises(genai_errors.ClientError) as caught:
        gemini.batches.get(name=names[0])
    assert caught.value.code == 404
    assert [b.name for b in gemini.batches.list()] == [names[2], names[1]]


def test_batch_calls_need_a_key(sim: SimulatorHandle) -> None:
    refused = httpx2.get(f"{sim.gemini_base_url}/v1beta/batches")

    assert refused.status_code == 403
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"
