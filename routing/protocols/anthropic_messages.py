"""Anthropic Messages on the wire (provider-contract §3, §11): what of a client's body llmops
reads and relays, its translation into Chat Completions for an OpenAI model (§12), and the
Messages and stream events llmops renders itself (a translated answer, a cache hit, an
idempotent replay).

A Claude model gets the body as sent (the model id mapped) and its answer comes back as sent;
MessageFold only watches such a stream go by. An OpenAI model gets the body as a chat request
(chat_of); its chat answer, or its chat deltas, come back here as a Message (message_of) or
Messages events (MessageEvents)."""

from __future__ import annotations

import copy
import json

from billing.pricing import PricingError, Usage
from routing.protocols import openai_chat, translation

ROUTED_FIELDS = frozenset({"model"})


def options_of(body: dict) -> dict:
    """Everything of a messages body but the model, as sent."""
    return {k: v for k, v in body.items() if k not in ROUTED_FIELDS}


def upstream_body(*, model: str, options: dict) -> dict:
    """The body for an Anthropic-protocol provider: the client's, with the provider's model id."""
    return {"model": model, **options}


# --- usage -------------------------------------------------------------------------------


def usage_of(usage: dict | None) -> Usage | None:
    """The ledger's usage from an Anthropic `usage` object (None if absent or not one).
    Anthropic's input_tokens already leave out cache reads and writes, as the ledger's do."""
    if not isinstance(usage, dict) or "input_tokens" not in usage or "output_tokens" not in usage:
        return None
    details = usage.get("output_tokens_details") or {}
    try:
        return Usage(
            input_tokens=usage["input_tokens"],
            cached_input_tokens=usage.get("cache_read_input_tokens") or 0,
            cache_write_tokens=usage.get("cache_creation_input_tokens") or 0,
            output_tokens=usage["output_tokens"],
            reasoning_tokens=details.get("thinking_tokens") or 0,
        )
    except PricingError:  # negative, not whole, implausible: not a usage to bill on
        return None


def usage_json(usage: Usage) -> dict:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
        "output_tokens": usage.output_tokens,
    }


# --- Messages request → Chat Completions (for an OpenAI model) ----------------------------


# What cannot be honoured is refused by name (translation.Untranslatable, raised here too).
Untranslatable = translation.Untranslatable


# Fields that only tag the call or ask for what OpenAI does by itself: not passed on.
# cache_control: OpenAI caches prompts automatically. diagnostics asks for a cache-miss report,
# which a Message leaves null when there is none to give.
_CONSUMED = frozenset({"cache_control", "diagnostics"})
# Fields dropped at the values that ask for what an OpenAI model does anyway.
_CONSUMED_AT = {"service_tier": ("auto", "standard_only"), "speed": ("standard",)}
# Fields chat takes under the same name and meaning (Anthropic's temperature range, 0 to 1, lies
# inside OpenAI's). A tuple: the chat body's fields come in a fixed order.
_KEPT = ("temperature", "top_p", "stream")
# Handled field by field below; any other field (top_k, container, mcp_servers, inference_geo,
# …) is refused by name.
_MAPPED = frozenset({"messages", "system", "max_tokens", "stop_sequences", "metadata", "tools",
                     "tool_choice", "output_config", "output_format", "thinking",
                     "context_management"})  # fmt: skip
# Claude Code's first system block may be its attribution line: Anthropic's billing header,
# not an instruction to the model.
_BILLING_HEADER = "x-anthropic-billing-header:"
_MAX_STOP = 4  # OpenAI takes at most four stop sequences
_MAX_TOOL_NAME = 64  # OpenAI's limit (Anthropic's is 128)
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
# A tool's fields: mapped, dropped (caching; how eagerly Claude streams a call's input), and
# dropped at the values that ask for nothing.
_TOOL_MAPPED = frozenset({"type", "name", "description", "input_schema", "strict"})
_TOOL_DROPPED = frozenset({"cache_control", "eager_input_streaming"})
_TOOL_AT = {"defer_loading": (False,), "allowed_callers": (["direct"],)}


def chat_of(options: dict) -> tuple[list[dict], dict]:
    """A Messages body (options: all but the model) as Chat Completions (messages, chat options)
    for an OpenAI model, after LiteLLM's adapter (provider-contract §12). Raises Untranslatable
    for anything that cannot be honoured (never drops it silently)."""
    for key, value in options.items():
        if value is None or key in _CONSUMED or key in _KEPT or key in _MAPPED:
            continue
        if key not in _CONSUMED_AT or value not in _CONSUMED_AT[key]:
            raise Untranslatable(key, f"an OpenAI model cannot honour {key}")
    chat = {k: options[k] for k in _KEPT if options.get(k) is not None}
    if options.get("max_tokens") is not None:
        # Both count reasoning in the limit (Claude's thinking, OpenAI's reasoning tokens).
        chat["max_completion_tokens"] = options["max_tokens"]
    if (stop := _stop(options.get("stop_sequences"))) is not None:
        chat["stop"] = stop
    metadata = options.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        chat["user"] = metadata["user_id"]
    _check_context_management(options.get("context_management"))
    if tools := options.get("tools"):
        chat["tools"] = [_chat_tool(index, tool) for index, tool in enumerate(tools)]
    chat.update(_chat_tool_choice(options.get("tool_choice"), bool(tools)))
    if (fmt := _response_format(options)) is not None:
        chat["response_format"] = fmt
    if (effort := _reasoning_effort(options)) is not None:
        chat["reasoning_effort"] = effort

    messages = []
    if system := _system(options.get("system")):
        messages.append({"role": "system", "content": system})
    turns = options.get("messages")
    if not isinstance(turns, list) or not turns:
        raise Untranslatable("messages", "messages must be a non-empty list of turns")
    for index, turn in enumerate(turns):
        messages += _turn(turn, f"messages.{index}", last=index == len(turns) - 1)
    return messages, chat


def _stop(sequences) -> list[str] | None:
    if sequences is None:
        return None
    if not isinstance(sequences, list) or len(sequences) > _MAX_STOP:
        raise Untranslatable("stop_sequences", "an OpenAI model takes at most 4 stop sequences")
    return [s for s in sequences if s] or None


def _check_context_management(value) -> None:
    # Claude Code asks to clear old thinking blocks; an OpenAI model is never sent them (see
    # _turn), so that edit is done already. Clearing tool results would change what it reads.
    if value is None:
        return
    edits = value.get("edits") if isinstance(value, dict) else None
    if not isinstance(edits, list) or set(value) - {"edits"}:
        raise Untranslatable("context_management", "an OpenAI model cannot manage its context")
    for index, edit in enumerate(edits):
        kind = edit.get("type") if isinstance(edit, dict) else None
        if not (isinstance(kind, str) and kind.startswith("clear_thinking_")):
            raise Untranslatable(
                f"context_management.edits.{index}", f"an OpenAI model cannot apply {kind!r}"
            )


def _chat_tool(index: int, tool) -> dict:
    """A custom tool as a chat function tool; server tools (web search, bash, the text editor,
    computer use) run on Anthropic's side and have no OpenAI counterpart."""
    where = f"tools.{index}"
    if not isinstance(tool, dict) or tool.get("type", "custom") not in ("custom", None):
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise Untranslatable(where, f"an OpenAI model cannot use {kind!r} tools")
    for key, value in tool.items():
        if value is None or key in _TOOL_MAPPED or key in _TOOL_DROPPED:
            continue
        if key not in _TOOL_AT or value not in _TOOL_AT[key]:
            raise Untranslatable(f"{where}.{key}", f"an OpenAI model cannot honour {key}")
    name = tool.get("name")
    if not isinstance(name, str) or len(name) > _MAX_TOOL_NAME:
        # A shortened name would come back in the answer's tool_use under the wrong name.
        raise Untranslatable(f"{where}.name", "an OpenAI tool name has at most 64 characters")
    function = {"name": name}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice, has_tools: bool) -> dict:
    """tool_choice (and disable_parallel_tool_use) as chat options. OpenAI refuses both without
    tools, where auto and none mean what no tools does anyway."""
    if choice is None:
        return {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "none") and not has_tools:
        return {}
    if kind in _TOOL_CHOICE:
        chat: dict = {"tool_choice": _TOOL_CHOICE[kind]}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        chat = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise Untranslatable("tool_choice", f"an OpenAI model cannot honour {choice!r}")
    if not has_tools:
        raise Untranslatable("tool_choice", "tool_choice names a tool the request lacks")
    if choice.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False
    return chat


def _response_format(options: dict) -> dict | None:
    """output_config.format (GA) or the beta top-level output_format as a strict json_schema
    response_format, as LiteLLM sends it."""
    config = options.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise Untranslatable("output_config", "output_config must be an object")
    for key, value in (config or {}).items():
        if key not in ("format", "effort") and value is not None:
            raise Untranslatable(f"output_config.{key}", f"an OpenAI model cannot honour {key}")
    where, fmt = "output_config.format", (config or {}).get("format")
    if fmt is None:
        where, fmt = "output_format", options.get("output_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise Untranslatable(where, "an OpenAI model answers in a json_schema format only")
    if not isinstance(fmt.get("schema"), dict):
        raise Untranslatable(f"{where}.schema", "the format needs a schema")
    schema = _strict(copy.deepcopy(fmt["schema"]))
    return {
        "type": "json_schema",
        "json_schema": {"name": "structured_output", "schema": schema, "strict": True},
    }


def _strict(schema):
    """A schema as OpenAI's strict mode takes it: every object closed and all its properties
    required. An answer to it still satisfies the client's schema."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and isinstance(schema.get("properties"), dict):
            schema["additionalProperties"] = False
            schema["required"] = list(schema["properties"])
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


def _reasoning_effort(options: dict) -> str | None:
    """output_config.effort, else thinking's budget, as reasoning_effort (OpenAI's top is
    high). The thinking's display is moot: an OpenAI model's reasoning is never shown."""
    effort = (options.get("output_config") or {}).get("effort")
    if effort is not None:
        if effort not in _EFFORT:
            raise Untranslatable("output_config.effort", f"unknown effort {effort!r}")
        return _EFFORT[effort]
    thinking = options.get("thinking")
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return None
    if kind == "adaptive":
        return "medium"
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int):
            raise Untranslatable("thinking.budget_tokens", "budget_tokens must be a number")
        # LiteLLM's buckets (reasoning_effort_from_thinking_budget).
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    raise Untranslatable("thinking.type", f"an OpenAI model cannot think as {kind!r}")


def _system(system) -> str | list[dict] | None:
    if system is None or isinstance(system, str):
        return system or None
    if not isinstance(system, list):
        raise Untranslatable("system", "system must be a string or text blocks")
    texts = []
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise Untranslatable(f"system.{index}", "a system prompt is text blocks")
        text = block.get("text") or ""
        if not (index == 0 and text.startswith(_BILLING_HEADER)):
            texts.append(text)
    return _text_content(texts)


def _text_content(texts: list[str]) -> str | list[dict] | None:
    """Text blocks as chat content: a string for one, text parts for several, None for none."""
    if not texts:
        return None
    if len(texts) == 1:
        return texts[0]
    return [{"type": "text", "text": t} for t in texts]


def _turn(turn, where: str, *, last: bool) -> list[dict]:
    """One Anthropic turn as chat messages."""
    role = turn.get("role") if isinstance(turn, dict) else None
    if role not in ("user", "assistant", "system"):
        raise Untranslatable(f"{where}.role", f"a turn is the user's or the assistant's: {role!r}")
    content = turn.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise Untranslatable(f"{where}.content", "content must be a string or blocks")
    if role == "system":
        # A system turn among the others (Claude Code sends one): chat has them too.
        texts = []
        for index, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise Untranslatable(f"{where}.content.{index}", "a system turn holds text")
            texts.append(block.get("text") or "")
        return [{"role": "system", "content": _text_content(texts) or ""}]
    if role == "user":
        return _user_turn(content, where)
    message = _assistant_turn(content, where)
    if message and last:
        # Claude continues a prefilled answer; an OpenAI model would answer anew after it.
        raise Untranslatable(where, "an OpenAI model cannot continue a prefilled answer")
    return [message] if message else []


def _user_turn(blocks: list, where: str) -> list[dict]:
    """Tool results become tool messages, first (they must follow the assistant's calls);
    the rest of the turn becomes one user message after them."""
    tools, parts = [], []
    for index, block in enumerate(blocks):
        at = f"{where}.content.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            message, images = _tool_message(block, at)
            tools.append(message)
            parts += images
        else:
            raise Untranslatable(at, f"an OpenAI model cannot read {kind!r} blocks")
    if not parts:
        return tools
    if all(p["type"] == "text" for p in parts):
        content = _text_content([p["text"] for p in parts])
    else:
        content = parts
    return [*tools, {"role": "user", "content": content}]


def _tool_message(block: dict, where: str) -> tuple[dict, list[dict]]:
    """A tool_result as a tool message, and its images: a chat tool message holds text only,
    so they go to the user message that follows, where the model sees them."""
    content = block.get("content")
    texts, images = [], []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for index, part in enumerate(content):
            at = f"{where}.content.{index}"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(part.get("text") or "")
            elif kind == "image":
                images.append(_image_part(part, at))
            else:
                raise Untranslatable(at, f"an OpenAI model cannot read {kind!r} tool results")
    elif content is not None:
        raise Untranslatable(f"{where}.content", "a tool result is a string or blocks")
    message = {
        "role": "tool",
        "tool_call_id": block.get("tool_use_id"),
        "content": _text_content(texts) or "",
    }
    return message, images


def _image_part(block: dict, where: str) -> dict:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    if block.get("transformations"):
        raise Untranslatable(f"{where}.transformations", "an OpenAI model takes images as sent")
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        # A file_id names a file in Anthropic's storage, out of an OpenAI model's reach.
        raise Untranslatable(f"{where}.source", "an OpenAI model needs the image or its url")
    return {"type": "image_url", "image_url": {"url": url}}


def _assistant_turn(blocks: list, where: str) -> dict | None:
    texts = []
    for index, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind not in ("tool_use", "thinking", "redacted_thinking"):
            # Server tool blocks record work done on Anthropic's side.
            raise Untranslatable(
                f"{where}.content.{index}", f"an OpenAI model cannot read {kind!r} blocks"
            )
    # Thinking is left out: an OpenAI model cannot read another model's signed reasoning.
    calls = tool_calls_of({"content": blocks})
    if not texts and not calls:
        return None
    message: dict = {"role": "assistant", "content": _text_content(texts)}
    if calls:
        message["tool_calls"] = calls
    return message


# --- Message objects ---------------------------------------------------------------------

# OpenAI's finish_reason -> Anthropic's stop_reason (LiteLLM's, with content_filter).
_STOP_REASON_OF = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                   "function_call": "tool_use", "content_filter": "refusal"}  # fmt: skip


def message_of(answer: dict, *, usage: Usage, id: str, model: str) -> dict:
    """A chat answer (choice 0) as an Anthropic Message: a text block (if any text), then one
    tool_use block per call. An OpenAI refusal is told as its text with stop_reason refusal."""
    choice = (answer.get("choices") or [{}])[0]
    refusal = (choice.get("message") or {}).get("refusal")
    text = openai_chat.first_text(answer) + (refusal or "")
    content: list[dict] = [{"type": "text", "text": text}] if text else []
    calls = openai_chat.tool_calls_of(answer)
    for call in calls:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": _input_of(function.get("arguments")),
            }
        )
    reason = _STOP_REASON_OF.get(openai_chat.first_finish(answer), "end_turn")
    if refusal:
        reason = "refusal"
    elif calls and reason == "end_turn":
        # OpenAI ends a forced call (tool_choice naming a function) with "stop"; an Anthropic
        # client loops on stop_reason tool_use to run it.
        reason = "tool_use"
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,  # OpenAI does not say which stop sequence matched
        "usage": usage_json(usage),
    }


def _input_of(arguments) -> dict:
    """A call's JSON arguments as tool_use input ({} when they are not a JSON object)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- streams -----------------------------------------------------------------------------


def sse(event: dict) -> bytes:
    """One event on the wire: both SDK versions drop an event without its `event:` line."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def _start(message: dict) -> dict:
    """message_start: the message without its content or end, output_tokens 1 as Anthropic
    starts (message_delta carries the count)."""
    skeleton = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    if "stop_details" in message:
        skeleton["stop_details"] = None
    skeleton["usage"] = {**(message.get("usage") or {}), "output_tokens": 1}
    return {"type": "message_start", "message": skeleton}


def _block_start(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: dict) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _block_stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


def _end(message: dict) -> list[dict]:
    """message_delta with the final usage whole (SDK 2.x overwrites each count it is given;
    0.x reads output_tokens only), then message_stop."""
    delta = {
        "stop_reason": message.get("stop_reason"),
        "stop_sequence": message.get("stop_sequence"),
    }
    for key in ("stop_details", "container"):
        if message.get(key) is not None:
            delta[key] = message[key]
    return [
        {"type": "message_delta", "delta": delta, "usage": message.get("usage") or {}},
        {"type": "message_stop"},
    ]


class MessageEvents:
    """Messages stream events rendered from chat deltas (a translated stream). Blocks are
    told one at a time, indexed 0..n-1 in the order they start (the SDK reads content[index]):
    a text block, or a tool_use block per call; a new block closes the one before."""

    def __init__(self, *, id: str, model: str, input_tokens: int = 0):
        self.id, self.model, self.input_tokens = id, model, input_tokens
        self.blocks = 0  # how many have started
        self.open: int | None = None  # index of the block not yet stopped
        self.open_type = ""
        self.calls: dict[int, int] = {}  # chat tool call index -> block index

    def start(self) -> list[dict]:
        """message_start, then a ping."""
        usage = {"input_tokens": self.input_tokens}
        message = {"id": self.id, "type": "message", "role": "assistant", "model": self.model}
        return [_start({**message, "usage": usage}), {"type": "ping"}]

    def add(self, delta: dict) -> list[dict]:
        """A chat delta as events: starts a text or tool_use block as needed, then
        text_delta / input_json_delta. A refusal is told as text, as message_of tells it."""
        events = []
        if text := (delta.get("content") or "") + (delta.get("refusal") or ""):
            if self.open_type != "text":
                events += self._open({"type": "text", "text": ""})
            events.append(_delta(self.open, {"type": "text_delta", "text": text}))
        for piece in delta.get("tool_calls") or ():
            index = piece.get("index", 0)
            function = piece.get("function") or {}
            if index not in self.calls:
                block = {
                    "type": "tool_use",
                    "id": piece.get("id") or "",
                    "name": function.get("name") or "",
                    "input": {},
                }
                events += self._open(block)
                self.calls[index] = self.open
            if arguments := function.get("arguments"):
                json_delta = {"type": "input_json_delta", "partial_json": arguments}
                events.append(_delta(self.calls[index], json_delta))
        return events

    def complete(self, message: dict) -> list[dict]:
        """Stops the open block, then message_delta and message_stop from `message` (the
        Message the request recorded: message_of's, with the billed usage)."""
        return [*self._close(), *_end(message)]

    def failed(self, message: str, type: str = "api_error") -> list[dict]:
        """An error event (the SDK raises APIStatusError at it); nothing is stopped."""
        return [{"type": "error", "error": {"type": type, "message": message}}]

    def _open(self, block: dict) -> list[dict]:
        events = self._close()
        self.open, self.open_type = self.blocks, block["type"]
        self.blocks += 1
        return [*events, _block_start(self.open, block)]

    def _close(self) -> list[dict]:
        if self.open is None:
            return []
        index, self.open, self.open_type = self.open, None, ""
        return [_block_stop(index)]


def answer_events(message: dict) -> list[dict]:
    """A finished Message told as the whole event sequence (for a cache hit or an idempotent
    replay): message_start without content, each block started empty, its content in one
    delta, stopped; then message_delta and message_stop."""
    events = [_start(message)]
    for index, block in enumerate(message.get("content") or ()):
        events += _block_events(index, block)
    return [*events, *_end(message)]


def _block_events(index: int, block: dict) -> list[dict]:
    kind = block.get("type")
    deltas = []
    if kind == "text":
        citations = block.get("citations")
        start = {**block, "text": ""}
        if citations:
            start["citations"] = []
            deltas += [{"type": "citations_delta", "citation": c} for c in citations]
        deltas.append({"type": "text_delta", "text": block.get("text") or ""})
    elif kind in ("tool_use", "server_tool_use"):
        start = {**block, "input": {}}
        partial = json.dumps(block.get("input") or {}, ensure_ascii=False)
        deltas.append({"type": "input_json_delta", "partial_json": partial})
    elif kind == "thinking":
        start = {**block, "thinking": "", "signature": ""}
        deltas += [
            {"type": "thinking_delta", "thinking": block.get("thinking") or ""},
            {"type": "signature_delta", "signature": block.get("signature") or ""},
        ]
    else:  # redacted thinking and a relayed answer's server tool results: told whole
        start = block
    return [
        _block_start(index, start),
        *(_delta(index, d) for d in deltas),
        _block_stop(index),
    ]


# The field of a delta that adds to its block.
_DELTA_FIELD = {"text_delta": "text", "thinking_delta": "thinking",
                "input_json_delta": "partial_json"}  # fmt: skip


class MessageFold:
    """Watches a relayed Messages stream (its events as dicts, from an Anthropic-protocol
    provider) and folds it as the SDK's accumulator does: the text as it comes, the final
    Message (at message_stop), an error."""

    def __init__(self) -> None:
        self.message: dict | None = None
        self.error: dict | None = None
        self._message: dict | None = None  # in the making
        # A block's text, thinking or input JSON as it came, joined at its stop (adding each
        # piece to a string would copy the whole so far at every event of a long answer).
        self._pieces: dict[int, list[str]] = {}

    def add(self, event: dict) -> str:
        """Take one event in; returns the text it added ("" if none)."""
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            message = event["message"]
            content, usage = message.get("content") or (), message.get("usage") or {}
            self._message = {**message, "content": list(content), "usage": dict(usage)}
        elif kind == "error":
            self.error = event.get("error")
        elif self._message is None:
            return ""  # ping, or events out of order
        elif kind == "content_block_start":
            self._message["content"].append(dict(event.get("content_block") or {}))
        elif kind == "content_block_delta":
            return self._delta(event.get("index", 0), event.get("delta") or {})
        elif kind == "content_block_stop":
            self._stop(event.get("index", 0))
        elif kind == "message_delta":
            self._message.update(event.get("delta") or {})
            # Cumulative counts: each one given overwrites; one left out keeps its start.
            usage = event.get("usage") or {}
            self._message["usage"].update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            for index in list(self._pieces):  # a block the stream never stopped
                self._stop(index)
            self.message = self._message
        return ""

    def _block(self, index: int) -> dict:
        content = self._message["content"] if self._message else []
        return content[index] if 0 <= index < len(content) else {}

    def _delta(self, index: int, delta: dict) -> str:
        kind = delta.get("type")
        if field := _DELTA_FIELD.get(kind):
            piece = delta.get(field) or ""
            self._pieces.setdefault(index, []).append(piece)
            return piece if kind == "text_delta" else ""
        block = self._block(index)
        if kind == "signature_delta":
            block["signature"] = delta.get("signature") or ""
        elif kind == "citations_delta":
            block["citations"] = [*(block.get("citations") or ()), delta.get("citation")]
        return ""

    def _stop(self, index: int) -> None:
        whole = "".join(self._pieces.pop(index, ()))
        block = self._block(index)
        if block.get("type") in ("text", "thinking"):
            block[block["type"]] = (block.get(block["type"]) or "") + whole
        elif whole:  # a tool's input, whole only now
            block["input"] = _input_of(whole)


# --- reading a Message -------------------------------------------------------------------


def text_of(message: dict) -> str:
    """Every text block, joined: what the request record and the pages show."""
    return openai_chat.first_text(translation.openai_answer(message))


def finish_of(message: dict) -> str:
    """The message's end in chat's vocabulary, for the request record."""
    return translation.STOP_REASON.get(message.get("stop_reason") or "", "stop")


def tool_calls_of(message: dict) -> list:
    """The tool_use blocks as chat tool calls."""
    return openai_chat.tool_calls_of(translation.openai_answer(message))


# --- errors ------------------------------------------------------------------------------

# The status a client gets -> Anthropic's error.type for it (the SDK picks its exception
# class by status; Claude Code reads the type). 503 is api_error: overloaded_error is
# Anthropic's 529 signal of its own capacity, and Claude Code tells the user so.
ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    408: "timeout_error", 409: "conflict_error", 413: "request_too_large",
    422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error", 502: "api_error",
    503: "api_error", 504: "timeout_error", 529: "overloaded_error",
}  # fmt: skip


def error_body(status: int, message: str, *, request_id: str | None = None) -> dict:
    """Anthropic's error object (the SDK reads error.type and error.message)."""
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}


def error_envelope(body: dict | None, *, status: int, message: str) -> dict:
    """A provider's error object for an Anthropic client: Anthropic's own as it came, OpenAI's
    ({"error": {"message", "type", "code", "param"}}) in Anthropic's envelope by status, keeping
    its message; `message` when the body says nothing."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return error_body(status, message)
    if body.get("type") == "error":
        return body
    return error_body(status, str(error.get("message") or message))
