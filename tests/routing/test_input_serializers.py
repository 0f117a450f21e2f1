"""The serving path's body serializers share their fields across instances and threads
(routing.asks.InputSerializer): a body's verdict must not depend on what another instance,
in this thread or another, validated before or meanwhile."""

from __future__ import annotations

import threading

from routing.asks import ChatCompletionInputSerializer, RequestInputSerializer
from routing.consumers import StartSerializer

GOOD = {"workload": "w", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
CASES = [
    (GOOD, None),
    ({**GOOD, "max_tokens": 0}, "max_tokens"),
    ({**GOOD, "messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
    ({**GOOD, "temperature": "hot"}, "temperature"),
    ({**GOOD, "messages": [{"role": "tool", "content": "42"}]}, "messages"),
]


def verdict(serializer_class, body) -> tuple[str | None, dict | None]:
    serializer = serializer_class(data=body)
    if serializer.is_valid():
        return None, dict(serializer.validated_data)
    return next(iter(serializer.errors)), None


def test_each_body_gets_its_own_verdict_whatever_was_validated_before():
    for body, field in CASES * 3:
        got, data = verdict(RequestInputSerializer, body)
        assert got == field, (body, got)
        if field is None:
            assert data["max_tokens"] == 5 and data["messages"][0]["content"] == "hi"


def chat_of(body: dict) -> dict:
    return {"model": "m", "messages": body["messages"], "max_tokens": body["max_tokens"]}


def test_threads_validating_at_once_each_get_their_bodys_verdict():
    # Each body's verdict in this thread alone, then from six threads at once.
    expected = [
        (
            verdict(RequestInputSerializer, body),
            verdict(ChatCompletionInputSerializer, chat_of(body)),
        )
        for body, _ in CASES
    ]
    assert [native[0] for native, _ in expected] == [field for _, field in CASES]
    assert [chat[0] for _, chat in expected] == [None, "max_tokens", "messages", None, None]
    wrong: list = []

    def run(offset: int) -> None:
        for i in range(300):
            index = (i + offset) % len(CASES)
            body = CASES[index][0]
            got = (
                verdict(RequestInputSerializer, body),
                verdict(ChatCompletionInputSerializer, chat_of(body)),
            )
            if got != expected[index]:
                wrong.append((index, got))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_subclass_has_its_own_fields():
    """The websocket's start message adds `type` and drops `stream`: its fields are not its
    parent's."""
    assert "type" in StartSerializer().fields and "stream" not in StartSerializer().fields
    assert "type" not in RequestInputSerializer().fields
    assert "stream" in RequestInputSerializer().fields
    got, _ = verdict(StartSerializer, {**GOOD, "type": "start"})
    assert got is None
    got, _ = verdict(StartSerializer, {**GOOD, "type": "stop"})
    assert got == "type"
