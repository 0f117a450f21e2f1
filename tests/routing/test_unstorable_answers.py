"""A realtime answer holding a number JSON cannot carry (NaN, Infinity) is a bad answer the
provider may have billed, never stored (PostgreSQL refuses it) nor passed on changed. The
simulator sends only JSON, so a provider that does not is a small HTTP server here."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from routing import providers
from routing.providers import ChatRequest, Endpoint, ProviderError

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
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
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


def ask(server) -> object:
    endpoint = Endpoint(
        kind="openai", base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="k"
    )
    request = ChatRequest(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    return providers.complete_sync(endpoint, request)


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
