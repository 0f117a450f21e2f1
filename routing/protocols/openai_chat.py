"""OpenAI Chat Completions on the wire: what of a client's body llmops reads and relays, the
answer assembled from a relayed stream, and the bodies and chunks llmops renders itself (a
cache hit, an idempotent replay, an answer translated from another protocol).

The body a client sends is relayed as sent (the model id mapped): llmops reads only what it
routes and bills on (model, messages, the token limits, n, stream) and passes every other
field through, known to it or not."""

from __future__ import annotations

from typing import Any

from billing.pricing import Usage
from llmops import fastjson

# The fields llmops reads itself; everything else of a body is the request's `options`,
# relayed untouched.
ROUTED_FIELDS = frozenset({"model", "messages"})

# Fields that do not change what the model answers: left out of the response cache's key, so
# two requests differing only in them share an answer. Anything else, known or not, counts.
NOT_IN_ANSWER = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "metadata",
        "store",
        "service_tier",
    }
)


def options_of(body: dict) -> dict:
    """Everything of a chat.completions body but what llmops routes on, as sent."""
    return {k: v for k, v in body.items() if k not in ROUTED_FIELDS}


def upstream_body(*, model: str, messages: list[dict], options: dict) -> dict:
    """The body for an OpenAI-protocol provider: the client's, with the provider's model id."""
    return {"model": model, "messages": messages, **options}


def answer_material(options: dict) -> dict:
    """The options that can change an answer (the response cache keys on them)."""
    return {k: v for k, v in options.items() if k not in NOT_IN_ANSWER}


# --- usage -------------------------------------------------------------------------------


def usage_of(usage: dict | None) -> Usage | None:
    """The ledger's usage from an OpenAI `usage` object (None if absent or not one)."""
    if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
        return None
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    cached = prompt.get("cached_tokens") or 0
    return Usage(
        input_tokens=usage["prompt_tokens"] - cached,
        cached_input_tokens=cached,
        output_tokens=usage.get("completion_tokens") or 0,
        reasoning_tokens=completion.get("reasoning_tokens") or 0,
    )


def usage_json(usage: Usage) -> dict:
    prompt = usage.input_tokens + usage.cached_input_tokens + usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


# --- answers -----------------------------------------------------------------------------
# An "answer" is a chat.completion without its usage: {"id", "model", "created", "choices",
# and any other field the provider sent (system_fingerprint, service_tier)}.


def answer_of(body: dict) -> dict:
    """A provider's chat.completion as an answer (its usage is billed apart)."""
    return {k: v for k, v in body.items() if k != "usage"}


def text_answer(
    text: str, *, finish_reason: str, model: str, tool_calls: list | None = None
) -> dict:
    """An answer of one choice, for what llmops built itself (a translated answer)."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    elif message["content"] is None:
        message["content"] = ""
    return {
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
    }


def first_text(answer: dict) -> str:
    """Choice 0's text: what the request record, the pages and the native API show."""
    choices = answer.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


def first_finish(answer: dict) -> str:
    choices = answer.get("choices") or [{}]
    return choices[0].get("finish_reason") or "stop"


def tool_calls_of(answer: dict) -> list:
    choices = answer.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("tool_calls") or []


def response_body(answer: dict, *, usage: Usage, id: str, created: int, model: str) -> dict:
    """A chat.completion: the answer with the given identity and the billed usage."""
    return {
        **answer,
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "usage": usage_json(usage),
    }


def answer_chunks(
    answer: dict, *, id: str, created: int, model: str, usage: Usage | None
) -> list[dict]:
    """A finished answer told as chat.completion.chunk objects: each choice's role, its text,
    refusal and tool calls whole, its finish reason; then the usage chunk if `usage`."""
    head = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    if fingerprint := answer.get("system_fingerprint"):
        head["system_fingerprint"] = fingerprint
    chunks = []
    for choice in answer.get("choices") or []:
        index, message = choice.get("index", 0), choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("refusal"):
            delta["refusal"] = message["refusal"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {**call, "index": position} for position, call in enumerate(message["tool_calls"])
            ]
        logprobs = choice.get("logprobs")
        chunks.append(
            {**head, "choices": [_chunk_choice(index, delta, logprobs=logprobs)]},
        )
        chunks.append(
            {**head, "choices": [_chunk_choice(index, {}, finish=choice.get("finish_reason"))]}
        )
    if usage is not None:
        chunks.append({**head, "choices": [], "usage": usage_json(usage)})
    return chunks


def _chunk_choice(index: int, delta: dict, *, finish: str | None = None, logprobs=None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


class StreamAnswer:
    """A relayed stream's chunks folded into the answer they tell, as the openai SDK's
    ChatCompletionStreamState folds them: strings concatenate (a tool call's id, type and name
    come once, its arguments in pieces), logprobs extend, the finish reason is the last."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {}
        self.choices: dict[int, dict] = {}
        self.usage: dict | None = None
        self.text: list[str] = []  # choice 0's content, as it came

    def add(self, chunk: dict) -> str:
        """Fold one chunk in; returns the text it added to choice 0 ("" if none)."""
        if not self.head:
            self.head = {k: v for k, v in chunk.items() if k not in ("choices", "usage", "object")}
        elif chunk.get("system_fingerprint"):
            self.head["system_fingerprint"] = chunk["system_fingerprint"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        added = ""
        for part in chunk.get("choices") or ():
            index = part.get("index", 0)
            choice = self.choices.setdefault(
                index,
                {
                    "index": index,
                    "message": {"role": "assistant", "content": None, "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                },
            )
            message, delta = choice["message"], part.get("delta") or {}
            if (content := delta.get("content")) is not None:
                message["content"] = (message["content"] or "") + content
                if index == 0 and content:
                    self.text.append(content)
                    added += content
            if delta.get("refusal"):
                message["refusal"] = (message["refusal"] or "") + delta["refusal"]
            for call in delta.get("tool_calls") or ():
                _fold_tool_call(message.setdefault("tool_calls", []), call)
            if logprobs := part.get("logprobs"):
                folded = choice["logprobs"] or {"content": None, "refusal": None}
                for key in ("content", "refusal"):
                    if logprobs.get(key):
                        folded[key] = (folded[key] or []) + logprobs[key]
                choice["logprobs"] = folded
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
        return added

    def answer(self) -> dict:
        choices = [self.choices[i] for i in sorted(self.choices)]
        for choice in choices:
            choice["finish_reason"] = choice["finish_reason"] or "stop"
        return {**self.head, "choices": choices}


def _fold_tool_call(calls: list, piece: dict) -> None:
    index = piece.get("index", len(calls))
    while len(calls) <= index:
        calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if piece.get("id"):
        call["id"] += piece["id"]
    if piece.get("type"):
        call["type"] = piece["type"]
    function = piece.get("function") or {}
    for key in ("name", "arguments"):
        if function.get(key):
            call["function"][key] += function[key]


def first_delta(chunk: dict) -> dict | None:
    """Choice 0's delta in a chunk (its content or tool-call pieces), None if it has none."""
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = {k: v for k, v in (choice.get("delta") or {}).items() if v and k != "role"}
            return delta or None
    return None


def sse_events(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole server-sent events out of `buffer` (each with its closing blank line), and the
    incomplete rest."""
    buffer = buffer.replace(b"\r\n", b"\n")
    *events, rest = buffer.split(b"\n\n")
    return [e + b"\n\n" for e in events if e.strip()], rest


def sse_data(event: bytes) -> str | None:
    """The data of one event (its `data:` lines joined), or None if it has none."""
    lines = [
        line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
    ]
    return b"\n".join(lines).decode() if lines else None


def chunk_of(data: str) -> tuple[dict | None, str]:
    """A chunk's JSON (None for `[DONE]` and anything not an object), and the first number in
    it no JSON column or client parser takes (NaN, Infinity; fastjson.stored_loads), "" if
    none."""
    if data == "[DONE]":
        return None, ""
    try:
        value, unstorable = fastjson.stored_loads(data)
    except ValueError:
        return None, ""
    return (value, unstorable) if isinstance(value, dict) else (None, "")
