"""OpenAI Responses on the wire (provider-contract §10): what of a client's body llmops reads
and relays, its translation into Chat Completions for a Claude model, and the Response objects
and stream events llmops renders itself (a translated answer, a cache hit, an idempotent
replay).

An OpenAI-protocol provider gets the body as sent (the model id mapped) and its answer comes
back as sent; StreamFold only watches such a stream go by. A Claude model gets the body as a
chat request (chat_of), which routing.protocols.translation turns into Anthropic's; its chat
answer, or its chat deltas, come back here as a Response (response_of) or Responses events
(EventStream)."""

from __future__ import annotations

import copy
import json
from typing import Any

from billing.pricing import Usage
from routing.protocols import openai_chat, translation

ROUTED_FIELDS = frozenset({"model"})

# Fields that do not change what the model answers: left out of the response cache's key.
# `include` is not one of them: it adds to the Response (logprobs, encrypted reasoning), so a
# cached answer without them must not serve a request asking for them. Nor is
# previous_response_id: it brings the earlier turns.
NOT_IN_ANSWER = frozenset(
    {
        "stream",
        "stream_options",
        "store",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        "background",
    }
)


def options_of(body: dict) -> dict:
    """Everything of a responses body but the model, as sent."""
    return {k: v for k, v in body.items() if k not in ROUTED_FIELDS}


def upstream_body(*, model: str, options: dict) -> dict:
    """The body for an OpenAI-protocol provider: the client's, with the provider's model id."""
    return {"model": model, **options}


def answer_material(options: dict) -> dict:
    """The options that can change an answer (the response cache keys on them)."""
    return {k: v for k, v in options.items() if k not in NOT_IN_ANSWER}


# --- Responses request → Chat Completions (for a Claude model) ----------------------------


# What cannot be honoured is refused by name (translation.Untranslatable, raised here too).
Untranslatable = translation.Untranslatable


# Fields that only steer OpenAI's side (storage, streaming, caching, the turns llmops itself
# rebuilds from previous_response_id): read by llmops or meaningless to Claude, not passed on.
_CONSUMED = frozenset(
    {"store", "stream", "stream_options", "previous_response_id", "prompt_cache_key"}
)
_CONSUMED_AT = {"include": ([],), "truncation": ("disabled",), "background": (False,)}
# Options the chat translation judges itself (anthropic_refuses), passed on under their name
# (service_tier too: a Claude model serves at the standard tier only, as on the chat route).
_KEPT = frozenset({"temperature", "top_p", "parallel_tool_calls", "metadata", "service_tier"})
# Handled field by field below.
_MAPPED = frozenset(
    {
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "max_output_tokens",
        "user",
        "safety_identifier",
        "reasoning",
    }
)
# anthropic_refuses names chat parameters; the client sent their Responses counterparts.
_RESPONSES_NAME = {
    "response_format": "text.format",
    "max_completion_tokens": "max_output_tokens",
}
_FUNCTION_TOOL_FIELDS = frozenset({"type", "name", "description", "parameters", "strict"})
_ROLES = frozenset({"user", "assistant", "system", "developer"})


def chat_of(options: dict, *, history: list[dict] = ()) -> tuple[list[dict], dict]:
    """A Responses body (options) as Chat Completions (messages, chat options) for the Claude
    translation. `history` = earlier turns as Responses *items* (input items then output items
    of the earlier responses, oldest first) that llmops prepends for previous_response_id.
    Raises Untranslatable for anything that cannot be honoured (never drop silently)."""
    for key, value in options.items():
        if value is None or key in _CONSUMED or key in _KEPT or key in _MAPPED:
            continue
        if key not in _CONSUMED_AT or value not in _CONSUMED_AT[key]:
            raise Untranslatable(key, f"a Claude model cannot honour {key}")
    chat = {k: options[k] for k in _KEPT if options.get(k) is not None}
    if options.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = options["max_output_tokens"]
    if user := options.get("safety_identifier") or options.get("user"):
        chat["user"] = user
    _check_reasoning(options.get("reasoning"))
    if tools := options.get("tools"):
        chat["tools"] = [_chat_tool(index, tool) for index, tool in enumerate(tools)]
    if options.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(options["tool_choice"])
    if (fmt := _response_format(options.get("text"))) is not None:
        chat["response_format"] = fmt

    messages = []
    instructions = options.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise Untranslatable("instructions", "instructions must be a string for a Claude model")
    if instructions:
        messages.append({"role": "system", "content": instructions})
    try:
        _add_items(messages, history, "history")
    except Untranslatable as exc:  # the client names the history by the response it follows
        raise Untranslatable("previous_response_id", f"an earlier turn: {exc}") from exc
    if not isinstance(options.get("input"), str | list | None):
        raise Untranslatable("input", "input must be a string or a list of items")
    _add_items(messages, items_of(options), "input")

    if param := translation.anthropic_refuses(options=chat, messages=messages):
        if param.startswith("messages["):
            param = "input"  # the messages are instructions, history and input merged
        param = _RESPONSES_NAME.get(param, param)
        raise Untranslatable(param, f"a Claude model cannot honour {param} as sent")
    return messages, chat


def _check_reasoning(reasoning) -> None:
    # A Claude model thinks only when asked through Anthropic's `thinking`, which the chat
    # translation does not produce: effort "none" (no reasoning) is what it does anyway.
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise Untranslatable("reasoning", "reasoning must be an object")
    for key, value in reasoning.items():
        if value is not None and not (key == "effort" and value == "none"):
            raise Untranslatable(f"reasoning.{key}", "a Claude model here does not reason")


def _chat_tool(index: int, tool) -> dict:
    """A flat Responses function tool as a chat tool ({type, function: {...}})."""
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise Untranslatable(f"tools[{index}].type", f"a Claude model cannot use {kind!r} tools")
    for key, value in tool.items():
        if key not in _FUNCTION_TOOL_FIELDS and value is not None:
            raise Untranslatable(f"tools[{index}].{key}", f"a Claude model cannot honour {key}")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def _chat_tool_choice(choice):
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise Untranslatable("tool_choice", f"a Claude model cannot honour tool_choice {choice!r}")


def _response_format(text) -> dict | None:
    """`text` ({format, verbosity}) as a chat response_format (None for plain text)."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise Untranslatable("text", "text must be an object")
    for key, value in text.items():
        if key != "format" and value is not None:
            raise Untranslatable(f"text.{key}", f"a Claude model cannot honour text.{key}")
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise Untranslatable("text.format", f"a Claude model cannot answer in format {kind!r}")


def _add_items(messages: list[dict], items, name: str) -> None:
    """Responses items as chat messages, appended to `messages`; `name` ("input", "history")
    begins an Untranslatable's param."""
    for index, item in enumerate(items):
        where = f"{name}[{index}]"
        if not isinstance(item, dict):
            raise Untranslatable(where, "an input item must be an object")
        kind = item.get("type") or "message"  # an easy input message may have no type
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")},
            }
            last = messages[-1] if messages else {}
            # An answer's text and its calls (or several calls) are one assistant turn in chat.
            if last.get("role") == "assistant":
                messages[-1] = {**last, "tool_calls": [*(last.get("tool_calls") or ()), call]}
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": _tool_output(item.get("output"), where),
                }
            )
        elif kind != "reasoning":  # a reasoning item carries nothing Claude can read
            raise Untranslatable(f"{where}.type", f"a Claude model cannot read {kind!r}")


def _message(item: dict, where: str) -> dict:
    role = item.get("role")
    if role not in _ROLES:
        raise Untranslatable(f"{where}.role", f"a Claude model cannot read role {role!r}")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise Untranslatable(f"{where}.content", "content must be a string or a list of parts")
    parts = [_part(part, f"{where}.content[{i}]") for i, part in enumerate(content)]
    if role in ("system", "developer") and any(p["type"] != "text" for p in parts):
        # The translation keeps only the text of a system prompt.
        raise Untranslatable(f"{where}.content", "a Claude system prompt is text only")
    return {"role": role, "content": parts}


def _part(part, where: str) -> dict:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        if not part.get("image_url"):
            # A file_id names a file in OpenAI's storage, out of a Claude model's reach.
            raise Untranslatable(f"{where}.file_id", "a Claude model needs the image's url")
        image = {"url": part["image_url"]}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise Untranslatable(f"{where}.type", f"a Claude model cannot read {kind!r} parts")


def _tool_output(output, where: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(
        isinstance(p, dict) and p.get("type") == "input_text" for p in output
    ):
        return "".join(p.get("text") or "" for p in output)
    # The translation hands Claude a tool's result as text.
    raise Untranslatable(f"{where}.output", "a Claude model reads a tool's output as text")


# --- usage -------------------------------------------------------------------------------


def usage_of(usage: dict | None) -> Usage | None:
    """The ledger's usage from a Responses `usage` object (None if absent or not one).
    input_tokens include the cached ones, as chat's prompt_tokens do."""
    if not isinstance(usage, dict) or not isinstance(usage.get("input_tokens"), int):
        return None
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    output = usage.get("output_tokens_details") or {}
    return Usage(
        input_tokens=usage["input_tokens"] - cached,
        cached_input_tokens=cached,
        output_tokens=usage.get("output_tokens") or 0,
        reasoning_tokens=output.get("reasoning_tokens") or 0,
    )


def usage_json(usage: Usage) -> dict:
    prompt = usage.prompt_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,  # required by the SDK since 3.57
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": prompt + usage.output_tokens,
    }


# --- Response objects ---------------------------------------------------------------------

# A chat finish reason that cuts an answer short -> the Response's incomplete_details.reason.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_FINISH_OF_REASON = {reason: finish for finish, reason in _INCOMPLETE.items()}
# OpenAI's echo of a request field it was not sent.
_ECHO_DEFAULTS = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "safety_identifier": None,
    "store": True,
    "temperature": 1.0,
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}


def _skeleton(*, id: str, created_at: int, model: str, options: dict) -> dict:
    """A Response in progress: identity and the request's echo, no output yet."""
    echo = {
        k: copy.deepcopy(d) if options.get(k) is None else options[k]
        for k, d in _ECHO_DEFAULTS.items()
    }
    text = options.get("text") or {}
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "completed_at": None,  # not known here; left null rather than invented
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        **echo,
        "reasoning": {"effort": None, "summary": None, **(options.get("reasoning") or {})},
        "service_tier": "default",  # the tier a Claude model serves at (others are refused)
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "usage": None,
    }


def _tail(id: str) -> str:
    return id.removeprefix("resp_")


def _message_item(id: str, text: str, status: str) -> dict:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": id, "type": "message", "status": status, "role": "assistant", "content": [part]}


def _call_item(id: str, call: dict, status: str) -> dict:
    function = call.get("function") or {}
    return {
        "id": id,
        "type": "function_call",
        "status": status,
        "call_id": call.get("id") or "",
        "name": function.get("name") or "",
        "arguments": function.get("arguments") or "",
    }


def response_of(
    answer: dict, *, usage: Usage, id: str, created_at: int, model: str, options: dict
) -> dict:
    """A chat answer (choice 0) as a Response object (status completed; incomplete with
    incomplete_details.reason "max_output_tokens" when finish is length, "content_filter" for
    content_filter), output = [message item (if any text) with output_text part, then one
    function_call item per tool call], and the request's echo fields as OpenAI echoes them,
    with defaults when absent. Item ids deterministic from `id` (msg_<hex of id>,
    fc_<hex>_<n>); call_id = the tool call's id."""
    reason = _INCOMPLETE.get(openai_chat.first_finish(answer))
    text = openai_chat.first_text(answer)
    output = []
    if text:
        output.append(_message_item(f"msg_{_tail(id)}", text, "completed"))
    for n, call in enumerate(openai_chat.tool_calls_of(answer)):
        output.append(_call_item(f"fc_{_tail(id)}_{n}", call, "completed"))
    if reason and output:
        output[-1]["status"] = "incomplete"  # the answer was cut where it ends
    return {
        **_skeleton(id=id, created_at=created_at, model=model, options=options),
        "status": "incomplete" if reason else "completed",
        "incomplete_details": {"reason": reason} if reason else None,
        "output": output,
        "usage": usage_json(usage),
    }


# --- streams ------------------------------------------------------------------------------

_TERMINAL = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
}


class _Events:
    """Events numbered as they are made: sequence_number counts across the whole stream."""

    def __init__(self) -> None:
        self.sequence = 0

    def event(self, type: str, **fields) -> dict:
        event = {"type": type, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event


class EventStream(_Events):
    """Responses stream events rendered from chat deltas (a translated stream).

    Items are told one at a time, as OpenAI tells them: a new item closes the one before.
    Claude streams its text before its tool calls, so the items come in response_of's order;
    text after a call (which Claude does not send today) would open a message item of its own
    after the calls, while the final Response lists all text in the first message."""

    def __init__(self, *, id: str, created_at: int, model: str, options: dict):
        super().__init__()
        self.id, self.created_at, self.model, self.options = id, created_at, model, options
        self.items: list[dict] = []  # as streamed so far, in output_index order
        self.open: int | None = None  # output_index of the item not yet done
        self.calls: dict[int, int] = {}  # chat tool call index -> output_index

    def start(self) -> list[dict]:
        """response.created, response.in_progress."""
        response = _skeleton(
            id=self.id, created_at=self.created_at, model=self.model, options=self.options
        )
        return [
            self.event("response.created", response=response),
            self.event("response.in_progress", response=response),
        ]

    def add(self, delta: dict) -> list[dict]:
        """A chat delta as events: opens the message item or a function_call item as needed,
        then output_text.delta / function_call_arguments.delta."""
        events = []
        if text := delta.get("content"):
            if self.open is None or self.items[self.open]["type"] != "message":
                events += self._close("completed")
                events += self._open_message()
            item = self.items[self.open]
            item["content"][0]["text"] += text
            events.append(
                self.event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=self.open,
                    content_index=0,
                    delta=text,
                    logprobs=[],
                )
            )
        for piece in delta.get("tool_calls") or ():
            index = piece.get("index", 0)
            function = piece.get("function") or {}
            if index not in self.calls:
                events += self._close("completed")
                events += self._open_call(index, piece.get("id") or "", function.get("name"))
            if arguments := function.get("arguments"):
                position = self.calls[index]
                item = self.items[position]
                item["arguments"] += arguments
                events.append(
                    self.event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=position,
                        delta=arguments,
                    )
                )
        return events

    def finish(self, answer: dict, usage: Usage) -> list[dict]:
        """Closes the open item, then response.completed (or response.incomplete) with
        response_of(answer, ...)."""
        return self.complete(
            response_of(
                answer,
                usage=usage,
                id=self.id,
                created_at=self.created_at,
                model=self.model,
                options=self.options,
            )
        )

    def complete(self, response: dict) -> list[dict]:
        """Closes the open item, then the terminal event carrying `response` (the Response
        the request recorded: response_of's, with the billed usage)."""
        status = "incomplete" if response["status"] == "incomplete" else "completed"
        events = self._close(status)
        return [*events, self.event(_TERMINAL[response["status"]], response=response)]

    def failed(self, message: str, code: str) -> list[dict]:
        """A response.failed with error {code, message}; nothing is closed (the SDK takes a
        failed response with items unfinished). OpenAI's codes: server_error,
        rate_limit_exceeded, invalid_prompt, …"""
        response = {
            **_skeleton(
                id=self.id, created_at=self.created_at, model=self.model, options=self.options
            ),
            "status": "failed",
            "error": {"code": code, "message": message},
        }
        return [self.event("response.failed", response=response)]

    def _open_message(self) -> list[dict]:
        # The first message carries response_of's id; one after a call needs an id of its own.
        messages = sum(item["type"] == "message" for item in self.items)
        suffix = f"_{len(self.items)}" if messages else ""
        item = _message_item(f"msg_{_tail(self.id)}{suffix}", "", "in_progress")
        self.open = len(self.items)
        self.items.append(item)
        return [
            self.event(
                "response.output_item.added",
                output_index=self.open,
                item={**item, "content": []},
            ),
            self.event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=self.open,
                content_index=0,
                part=dict(item["content"][0]),
            ),
        ]

    def _open_call(self, index: int, call_id: str, name: str | None) -> list[dict]:
        call = {"id": call_id, "function": {"name": name}}
        item = _call_item(f"fc_{_tail(self.id)}_{index}", call, "in_progress")
        self.open = self.calls[index] = len(self.items)
        self.items.append(item)
        return [self.event("response.output_item.added", output_index=self.open, item=dict(item))]

    def _close(self, status: str) -> list[dict]:
        if self.open is None:
            return []
        position, item = self.open, self.items[self.open]
        self.open = None
        item["status"] = status
        events = []
        if item["type"] == "message":
            where = {"item_id": item["id"], "output_index": position, "content_index": 0}
            part = item["content"][0]
            events += [
                self.event("response.output_text.done", **where, text=part["text"], logprobs=[]),
                self.event("response.content_part.done", **where, part=part),
            ]
        else:
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=position,
                    arguments=item["arguments"],
                )
            )
        events.append(self.event("response.output_item.done", output_index=position, item=item))
        return events


def answer_events(response: dict) -> list[dict]:
    """A finished Response told as the whole event sequence (for a cache hit or an idempotent
    replay): created, in_progress, each item added / its content whole / done, then the
    terminal event of its status. sequence_number 0..n."""
    events = _Events()
    skeleton = {
        **response,
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "output": [],
        "usage": None,
    }
    told = [
        events.event("response.created", response=skeleton),
        events.event("response.in_progress", response=skeleton),
    ]
    for position, item in enumerate(response.get("output") or ()):
        told += _item_events(events, position, item)
    terminal = _TERMINAL.get(response.get("status") or "", "response.completed")
    told.append(events.event(terminal, response=response))
    return told


def _item_events(events: _Events, position: int, item: dict) -> list[dict]:
    kind = item.get("type")
    told = []
    if kind == "message":
        opened = {**item, "status": "in_progress", "content": []}
        told.append(events.event("response.output_item.added", output_index=position, item=opened))
        for index, part in enumerate(item.get("content") or ()):
            told += _part_events(events, item["id"], position, index, part)
    elif kind == "function_call":
        opened = {**item, "status": "in_progress", "arguments": ""}
        told.append(events.event("response.output_item.added", output_index=position, item=opened))
        where = {"item_id": item.get("id") or "", "output_index": position}
        arguments = item.get("arguments") or ""
        told += [
            events.event("response.function_call_arguments.delta", **where, delta=arguments),
            events.event("response.function_call_arguments.done", **where, arguments=arguments),
        ]
    else:  # reasoning and tool items of a relayed answer: told whole, as added then done
        told.append(events.event("response.output_item.added", output_index=position, item=item))
    told.append(events.event("response.output_item.done", output_index=position, item=item))
    return told


def _part_events(events: _Events, item_id: str, position: int, index: int, part: dict):
    """A content part told whole: added empty, its text (or refusal) in one delta, done."""
    where = {"item_id": item_id, "output_index": position, "content_index": index}
    if part.get("type") == "refusal":
        kind, field, whole = "refusal", "refusal", part.get("refusal") or ""
        empty: dict[str, Any] = {"type": "refusal", "refusal": ""}
        extra: dict[str, Any] = {}
    else:
        kind, field, whole = "output_text", "text", part.get("text") or ""
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        extra = {"logprobs": []}
    return [
        events.event("response.content_part.added", **where, part=empty),
        events.event(f"response.{kind}.delta", **where, delta=whole, **extra),
        events.event(f"response.{kind}.done", **where, **{field: whole}, **extra),
        events.event("response.content_part.done", **where, part=part),
    ]


def sse(event: dict) -> bytes:
    """One event on the wire (the SDK reads data.type; the event line is for other clients)."""
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


class StreamFold:
    """Watches a relayed Responses stream (its events as dicts, from an OpenAI-protocol
    provider) for what llmops records: the text as it comes, the final Response, an error."""

    def __init__(self) -> None:
        self.response: dict | None = None
        self.error: dict | None = None

    def add(self, event: dict) -> str:
        """Take one event in; returns the text it added ("" if none)."""
        kind = event.get("type")
        if kind == "response.output_text.delta":
            return event.get("delta") or ""
        if kind in _TERMINAL.values() and isinstance(event.get("response"), dict):
            self.response = event["response"]
        elif kind == "error":
            self.error = event
        return ""


# --- reading a Response -------------------------------------------------------------------


def text_of(response: dict) -> str:
    """Every output_text part of the message items, joined (the SDK's output_text)."""
    return "".join(
        part.get("text") or ""
        for item in response.get("output") or ()
        if item.get("type") == "message"
        for part in item.get("content") or ()
        if part.get("type") == "output_text"
    )


def finish_of(response: dict) -> str:
    """The response's end in chat's vocabulary, for the request record."""
    if any(item.get("type") == "function_call" for item in response.get("output") or ()):
        return "tool_calls"
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return _FINISH_OF_REASON.get(reason, "stop")
    return "stop"


def tool_calls_of(response: dict) -> list:
    """The function_call items as chat tool calls."""
    return [
        {
            "id": item.get("call_id"),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments")},
        }
        for item in response.get("output") or ()
        if item.get("type") == "function_call"
    ]


def items_of(options: dict) -> list[dict]:
    """The request's input as items: what llmops stores to rebuild a later request's history."""
    value = options.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []
