"""OpenAI Chat Completions ↔ Anthropic Messages: what of an OpenAI body a Claude model can
honour, and its translation. What cannot be honoured is refused by name (never dropped): the
router skips such a model in a chain, and a request no model of its chain can honour is a 400
naming the parameter and the model."""

from __future__ import annotations

import json

from routing.protocols import openai_chat


class Untranslatable(ValueError):
    """A parameter the serving model's protocol cannot honour; .param is its path (e.g.
    "top_k", "messages.2.content.0", "tools[1].type")."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


# Options a Claude model honours, with the values it honours them at (None: any value).
# Fields that only tag or route the call on OpenAI's side (user, metadata, store,
# prompt_cache_key) do not change the answer and are left behind.
_ANY = None
ANTHROPIC_HONOURS = {
    "max_tokens": _ANY,
    "max_completion_tokens": _ANY,
    "temperature": _ANY,
    "top_p": _ANY,
    "stop": _ANY,
    "stream": _ANY,
    "stream_options": _ANY,
    "user": _ANY,
    "safety_identifier": _ANY,
    "metadata": _ANY,
    "store": _ANY,
    "prompt_cache_key": _ANY,
    "n": {1},
    "logprobs": {False},
    "presence_penalty": {0},
    "frequency_penalty": {0},
    "service_tier": {"auto", "default"},
    "tools": _ANY,
    "tool_choice": _ANY,
    "parallel_tool_calls": _ANY,
    "response_format": _ANY,
}
# Content parts a Claude model reads (input_audio has no Anthropic counterpart).
ANTHROPIC_PARTS = frozenset({"text", "image_url"})
# Anthropic's temperature stops at 1 (OpenAI's at 2): above, the answer would not be the asked.
ANTHROPIC_MAX_TEMPERATURE = 1


def anthropic_refuses(*, options: dict, messages: list[dict]) -> str | None:
    """The first parameter of an OpenAI request a Claude model cannot honour, or None."""
    for key, value in options.items():
        if value is None:
            continue
        if key not in ANTHROPIC_HONOURS:
            return key
        allowed = ANTHROPIC_HONOURS[key]
        if allowed is not _ANY and value not in allowed:
            return key
    temperature = options.get("temperature")
    if isinstance(temperature, int | float) and temperature > ANTHROPIC_MAX_TEMPERATURE:
        return "temperature"
    for tool in options.get("tools") or ():
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            return "tools"  # custom tools have no Anthropic counterpart
    fmt = options.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in ("text", "json_object", "json_schema"):
        return "response_format"
    if json_object(options) and options.get("tools"):
        # json_object rides on a forced tool call (JSON_TOOL), which would keep the model from
        # calling the client's own tools.
        return "response_format"
    for index, message in enumerate(messages):
        if message.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            return f"messages[{index}].role"
        content = message.get("content")
        if isinstance(content, list):
            for position, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in ANTHROPIC_PARTS:
                    return f"messages[{index}].content[{position}]"
    return None


def stop_sequences(stop) -> list[str] | None:
    """OpenAI's `stop` (a string or a list) as Anthropic's `stop_sequences`."""
    if stop is None:
        return None
    sequences = [stop] if isinstance(stop, str) else list(stop)
    return [s for s in sequences if s] or None


# --- OpenAI request → Anthropic Messages ---------------------------------------------------
# The shapes follow LiteLLM's anthropic transformation (provider-contract §12), without its
# silent drops: what does not translate was refused by anthropic_refuses before this runs.

TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
# The tool a json_object response_format is asked through (a name no client tool has: a body
# with tools of its own and json_object is refused before this runs).
JSON_TOOL = "llmops_json_object"
JSON_TOOL_DEFINITION = {
    "name": JSON_TOOL,
    "description": "Answer with a JSON object.",
    "input_schema": {"type": "object"},
}


def json_object(options: dict) -> bool:
    fmt = options.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_object"


def anthropic_body(
    *, model: str, messages: list[dict], options: dict, max_tokens: int, temperature=None
) -> dict:
    """An OpenAI chat body as an Anthropic Messages body (a plain dict, for the HTTP API)."""
    system, turns = [], []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system += [b for b in _blocks(message.get("content")) if b.get("text")]
            continue
        blocks = _turn_blocks(message)
        turn_role = "assistant" if role == "assistant" else "user"  # a tool result is the user's
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"] += blocks  # Anthropic requires alternating roles
        else:
            turns.append({"role": turn_role, "content": blocks})
    if not turns or turns[0]["role"] != "user":
        # OpenAI takes a conversation that opens with the assistant; Anthropic requires the
        # user first: a minimal user turn opens it, as LiteLLM does.
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "."}]})
    body: dict = {"model": model, "max_tokens": max_tokens, "messages": turns}
    if system:
        body["system"] = system
    if temperature is not None:
        body["temperature"] = temperature
    if options.get("top_p") is not None:
        body["top_p"] = options["top_p"]
    if sequences := stop_sequences(options.get("stop")):
        body["stop_sequences"] = sequences
    if tools := options.get("tools"):
        body["tools"] = [_tool(t) for t in tools]
        choice = _tool_choice(options.get("tool_choice"))
        if options.get("parallel_tool_calls") is False:
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            body["tool_choice"] = choice
    fmt = options.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    elif json_object(options):
        # Anthropic's structured outputs take no schema-less object ("any JSON object" is not
        # a schema they accept), so json_object is a forced call of a tool whose input is any
        # object, as LiteLLM does for models without structured outputs; openai_answer turns
        # that call back into the JSON text of `content`.
        body["tools"] = [JSON_TOOL_DEFINITION]
        body["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
    user = options.get("safety_identifier") or options.get("user")
    if isinstance(user, str) and user and "@" not in user:
        body["metadata"] = {"user_id": user}
    return body


def _blocks(content) -> list[dict]:
    """OpenAI content (a string or parts) as Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part["image_url"]["url"]))
    return blocks


def _image(url: str) -> dict:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0] or "image/png"
        kind = "document" if media_type == "application/pdf" else "image"
        return {"type": kind, "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _turn_blocks(message: dict) -> list[dict]:
    role = message.get("role")
    if role == "tool":
        content = message.get("content")
        text = (
            content
            if isinstance(content, str)
            else "".join(p.get("text", "") for p in content or () if isinstance(p, dict))
        )
        return [
            {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": text}
        ]
    blocks = _blocks(message.get("content"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": arguments,
            }
        )
    return blocks or [{"type": "text", "text": "."}]


def _tool(tool: dict) -> dict:
    function = tool.get("function") or {}
    out = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    if function.get("strict") is not None:  # Anthropic's tools take strict too (GA)
        out["strict"] = function["strict"]
    return out


def _tool_choice(choice) -> dict | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    return TOOL_CHOICE.get(choice)


# --- Anthropic answer → OpenAI ------------------------------------------------------------

STOP_REASON = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def openai_answer(message: dict) -> dict:
    """An Anthropic message (as JSON) as an OpenAI answer (openai_chat's shape)."""
    text, calls = [], []
    finish = STOP_REASON.get(message.get("stop_reason") or "", "stop")
    for block in message.get("content") or ():
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use" and block.get("name") == JSON_TOOL:
            text.append(json.dumps(block.get("input") or {}, ensure_ascii=False))
            finish = "stop" if finish == "tool_calls" else finish
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}),
                    },
                }
            )
    return openai_chat.text_answer(
        "".join(text), finish_reason=finish, model=message.get("model", ""), tool_calls=calls
    )
