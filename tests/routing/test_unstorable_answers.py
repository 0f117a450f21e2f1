"""A realtime answer, whole or streamed, holding a number JSON cannot carry (NaN, Infinity) is
a bad answer the provider may have billed, never stored (PostgreSQL refuses it) nor passed on
changed. The simulator sends only JSON, so a provider that does not is a small HTTP server
here."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from routing import providers
from routing.providers import ChatRequest, Completion, Delta, Endpoint, ProviderError

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


@pytest.fixture
def provider():
    """A provider answering every POST with the body in `provider.answers[0]`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = server.answers[0]
            streamed = body.startswith(b"data:")
            self.send_response(200)
            self.send_header(
                "Content-Type", "text/event-stream" if streamed else "application/json"
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.answers = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _endpoint(server) -> Endpoint:
    return Endpoint(
        kind="openai", base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="k"
    )


def _request() -> ChatRequest:
    return ChatRequest(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )


def ask(server) -> object:
    return providers.complete_sync(_endpoint(server), _request())


def ask_streamed(server) -> tuple[list, ProviderError | None]:
    """What providers.stream yielded, and the error it ended with (None if none)."""

    async def read():
        got = []
        try:
            async for event in providers.stream(_endpoint(server), _request()):
                got.append(event)
        except ProviderError as exc:
            return got, exc
        return got, None

    return asyncio.run(read())


def _chunk(delta: dict, *, finish=None, usage=None, choices=True) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if choices
        else [],
        **({"usage": usage} if usage else {}),
    }


def _sse(*chunks: str) -> bytes:
    return b"".join(f"data: {chunk}\n\n".encode() for chunk in [*chunks, "[DONE]"])


STREAM = [
    _chunk({"role": "assistant", "content": "hi"}),
    _chunk({}, finish="stop"),
    _chunk({}, choices=False, usage=ANSWER["usage"]),
]


def test_a_plain_answer_is_read_as_before(provider):
    provider.answers.append(json.dumps(ANSWER).encode())

    completion = ask(provider)

    assert completion.text == "hi" and completion.answer["choices"] == ANSWER["choices"]
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (3, 1)


@pytest.mark.parametrize("number", ["NaN", "-Infinity", "1e999"])
def test_a_nan_in_an_answer_is_a_bad_answer_that_may_be_billed(provider, number):
    hostile = json.dumps({**ANSWER, "system_fingerprint": "NUMBER"}).replace('"NUMBER"', number)
    provider.answers.append(hostile.encode())

    with pytest.raises(ProviderError) as caught:
        ask(provider)

    error = caught.value
    assert (error.kind, error.retryable, error.maybe_billed) == ("bad_answer", False, True)
    spelled = "Infinity" if number == "1e999" else number
    assert f"answered with {spelled}, which is not a number JSON can carry" in str(error)


def test_a_plain_stream_is_read_as_before(provider):
    provider.answers.append(_sse(*(json.dumps(chunk) for chunk in STREAM)))

    got, error = ask_streamed(provider)

    assert error is None
    assert "".join(e.text for e in got if isinstance(e, Delta)) == "hi"
    (completion,) = [e for e in got if isinstance(e, Completion)]
    assert completion.text == "hi" and completion.usage.output_tokens == 1


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-1e999"])
def test_a_nan_in_a_streamed_chunk_cuts_the_stream_as_a_bad_answer(provider, number):
    """After output went to the client: a cut stream the provider may have billed; the chunk
    with the NaN is never passed on, nor anything after it."""
    hostile = json.dumps(_chunk({}, finish="stop") | {"logprobs_score": "NUMBER"})
    hostile = hostile.replace('"NUMBER"', number)
    provider.answers.append(_sse(json.dumps(STREAM[0]), hostile, json.dumps(STREAM[2])))

    got, error = ask_streamed(provider)

    assert [e.text for e in got] == ["hi"]  # the first chunk only; no Completion
    assert error is not None
    assert (error.kind, error.retryable, error.maybe_billed) == ("bad_answer", False, True)
    assert error.after_first_byte is True
    spelled = "-Infinity" if number == "-1e999" else number
    assert f"answered with {spelled}, which is not a number JSON can carry" in str(error)


def test_a_nan_in_the_first_chunk_is_a_bad_answer_before_any_output(provider):
    hostile = json.dumps(STREAM[0] | {"score": "NUMBER"}).replace('"NUMBER"', "NaN")
    provider.answers.append(_sse(hostile, json.dumps(STREAM[1]), json.dumps(STREAM[2])))

    got, error = ask_streamed(provider)

    assert got == [] and error is not None
    assert (error.kind, error.after_first_byte, error.maybe_billed) == ("bad_answer", False, True)


@pytest.mark.django_db
def test_a_client_stream_cut_by_a_nan_is_failed_and_billed_once_as_an_estimate(api, provider):
    """Through the front door (the native stream; the OpenAI-compatible one relays the same
    Relay): the client has the first text and then an error, never the chunk with the NaN;
    its request fails, billed once as a flagged estimate (the provider produced output), its
    hold settled; nothing with the NaN is stored."""
    from asgiref.sync import async_to_sync

    from billing.models import Hold, LedgerEntry
    from routing.models import Provider, Request

    hostile = json.dumps(STREAM[1] | {"score": "NUMBER"}).replace('"NUMBER"', "NaN")
    provider.answers.append(_sse(json.dumps(STREAM[0]), hostile, json.dumps(STREAM[2])))
    openai_provider = Provider.objects.get(kind="openai")
    openai_provider.base_url = f"http://127.0.0.1:{provider.server_port}/v1"
    openai_provider.save()

    response = api.post(
        "/api/v1/requests",
        {
            "workload": "product-search",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        format="json",
    )
    assert response.status_code == 200
    body = async_to_sync(_drain)(response)

    assert '"hi"' in body  # the first chunk's text went out
    assert "score" not in body  # the chunk with the NaN did not
    assert "event: error" in body and "not a number JSON can carry" in body
    request = Request.objects.get()
    assert request.status == Request.Status.FAILED
    entry = LedgerEntry.objects.get(request=request)
    assert entry.kind == LedgerEntry.Kind.ESTIMATE
    assert Hold.objects.get(request=request).status == Hold.Status.SETTLED
    assert "score" not in json.dumps(request.answer)


async def _drain(response) -> str:
    return b"".join([chunk async for chunk in response.streaming_content]).decode()
