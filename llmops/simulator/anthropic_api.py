"""Anthropic dialect: messages (plain and streamed), models, errors.

Validation messages mimic the real API's "field.path: problem" style, so the
message names the field.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llmops.simulator.state import Fault, SimState
from llmops.simulator.structured import chosen_tools, json_choice, tool_choice
from llmops.simulator.textgen import (
    Choice,
    corpus_text,
    count_tokens,
    derive_seed,
    generate,
    output_length,
    pieces,
    prompt_seed,
)
from llmops.simulator.wire import (
    JSON_TYPE,
    api_key,
    dump_bytes,
    dumps,
    is_int,
    is_number,
    page_window,
    pause,
    rfc3339,
    serve_stream,
    sse_event,
)

log = logging.getLogger(__name__)

PROMPT_OVERHEAD_TOKENS = 3
MAX_CACHE_BREAKPOINTS = 4
MODEL_CREATED = 1_740_000_000
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_calls": "tool_use",
}

Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


class AnthropicError(Exception):
    """An error answered in Anthropic's shape: {"type": "error", "error": {type, message}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.headers = headers or {}

    def error(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


def invalid(message: str) -> AnthropicError:
    return AnthropicError(400, message)


_ERROR_TYPES = {
    400: ("invalid_request_error", "Simulated invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}


def fault_error(fault: Fault) -> AnthropicError:
    status = fault.status or 500
    kind, message = _ERROR_TYPES.get(status) or (
        _ERROR_TYPES[500] if status >= 500 else _ERROR_TYPES[400]
    )
    return AnthropicError(
        status,
        fault.message or message,
        type=fault.error_type or kind,
        headers=fault.headers(),
    )


def json_response(
    body: object, rid: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"request-id": rid}
    if headers:
        all_headers.update(headers)
    return web.Response(
        body=dump_bytes(body), status=status, content_type=JSON_TYPE, headers=all_headers
    )


def error_response(exc: AnthropicError, rid: str) -> web.Response:
    body = {"type": "error", "error": exc.error(), "request_id": rid}
    return json_response(body, rid, exc.status, exc.headers)


def read_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("Invalid JSON in request body: the body could not be parsed.") from None
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object.")
    return body


def endpoint(state: SimState, name: str, fn: Handler) -> Callable[[web.Request], Awaitable[Any]]:
    """Auth, request id, injected errors and error rendering around an Anthropic route."""

    async def handler(request: web.Request) -> web.StreamResponse:
        rid = state.ids.make("req_")
        if api_key(request) is None:
            return error_response(
                AnthropicError(401, "x-api-key header is required", type="authentication_error"),
                rid,
            )
        try:
            if name != "messages" and state.faults.faults:
                fault = state.fault("anthropic", name, None, ("error", "stall"))
                if fault is not None:
                    if fault.kind == "error":
                        raise fault_error(fault)
                    await pause(fault.stall_s)
            return await fn(request, rid)
        except AnthropicError as exc:
            return error_response(exc, rid)
        except Exception:
            log.exception("simulator: unhandled error in Anthropic %s", request.path)
            return error_response(
                AnthropicError(500, "Internal server error", type="api_error"), rid
            )

    return handler


@dataclass(frozen=True, slots=True)
class ThinkingConfig:
    """A request's thinking switched on: `budget` is enabled's budget_tokens (None: adaptive)."""

    budget: int | None
    shown: bool  # display != "omitted": an omitted thought still costs tokens and is signed


@dataclass(slots=True)
class MessagesRequest:
    model: str
    segments: list[str]
    breakpoints: list[int]  # indexes of segments that end with a cache_control block
    max_tokens: int
    stop: list[str] | None
    stream: bool
    tools: list[dict] | None = None  # the tools called ({name, input_schema}), if any
    schema: dict | None = None  # output_config.format's (or output_format's) JSON schema
    thinking: ThinkingConfig | None = None


@dataclass(slots=True)
class Prompt:
    """What /v1/messages and count_tokens both read from a body: the billed prompt, in segments."""

    segments: list[str]
    breakpoints: list[int]
    after_tool: bool  # the last turn carries a tool_result, so `auto` answers in text


# What an image block costs in input tokens (Claude: width x height / 750; ~1,400 for a
# 1024 x 1024 image).
IMAGE_TOKENS = 1_400
# Anthropic's floor for thinking.budget_tokens.
MIN_THINKING_BUDGET = 1_024
# How long a thought runs, in words (= tokens); drawn per prompt, so it is deterministic.
THINKING_WORDS = (24, 64)
# Offsets the prompt seed for the thought, so it is not the answer's corpus slice again.
_THINKING_SEED = 0x7417


def prompt_tokens(segments: list[str]) -> int:
    """Every input token a prompt is billed (uncached + cache read + cache write): the one
    formula /v1/messages bills and count_tokens reports, so the two always agree."""
    images = sum(s.count("<image>") for s in segments)
    prompt = "\n".join(segments)
    return count_tokens(prompt) + PROMPT_OVERHEAD_TOKENS + IMAGE_TOKENS * images


def _block_text(block: Any, where: str) -> str:
    if not isinstance(block, dict):
        raise invalid(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind is None:
        raise invalid(f"{where}.type: Field required")
    if kind == "text":
        text = block.get("text")
        if not isinstance(text, str):
            raise invalid(f"{where}.text: Field required")
        return text
    if kind == "tool_use":
        return f"{block.get('name', '')} {dumps(block.get('input', {}))}"
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return " ".join(
                b.get("text", "")
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            )
        return str(content)
    if kind in ("thinking", "redacted_thinking"):
        return str(block.get("thinking", ""))
    if kind in ("image", "document"):
        source = block.get("source")
        if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "file"):
            raise invalid(f"{where}.source: Input should be a base64, url or file source")
        return f"<{kind}>"
    return f"<{kind}>"


def _check_range(body: dict[str, Any], key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if not is_number(value):
        raise invalid(f"{key}: Input should be a valid number")
    if value < low:
        raise invalid(f"{key}: Input should be greater than or equal to {low:g}")
    if value > high:
        raise invalid(f"{key}: Input should be less than or equal to {high:g}")


def _model_field(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise invalid("model: Field required")
    if not isinstance(model, str):
        raise invalid("model: Input should be a valid string")
    return model


def _max_tokens(body: dict[str, Any]) -> int:
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise invalid("max_tokens: Field required")
    if not is_int(max_tokens):
        raise invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")
    return max_tokens


def _known_model(model: str, models: dict[str, int]) -> None:
    if model not in models:
        raise AnthropicError(404, f"model: {model}", type="not_found_error")


def _parse_prompt(body: dict[str, Any]) -> Prompt:
    """The checked tools, system and messages as prompt segments, tools first (as Anthropic
    orders its cache prefix), each cache_control block ending a segment."""
    messages = body.get("messages")
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")

    segments: list[str] = []
    breakpoints: list[int] = []

    def add(text: str, block: Any) -> None:
        segments.append(text)
        if isinstance(block, dict) and block.get("cache_control"):
            breakpoints.append(len(segments) - 1)

    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools: Input should be a valid list")
        for tool in tools:
            if isinstance(tool, dict):
                add("tool: " + dumps({k: v for k, v in tool.items() if k != "cache_control"}), tool)
    system = body.get("system")
    if isinstance(system, str):
        if system:
            segments.append(f"system: {system}")
    elif isinstance(system, list):
        segments.append("system:")
        for index, block in enumerate(system):
            where = f"system.{index}"
            if not isinstance(block, dict) or block.get("type") != "text":
                raise invalid(f"{where}.type: Input should be 'text'")
            add(_block_text(block, where), block)
    elif system is not None:
        raise invalid("system: Input should be a valid string")

    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        # A `system` turn among the others: Claude Code sends one (a reminder mid-way).
        if role not in ("user", "assistant", "system"):
            raise invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        if index == 0 and role != "user":
            raise invalid(f'{where}.role: the first message must use the "user" role')
        content = message.get("content")
        if content is None:
            raise invalid(f"{where}.content: Field required")
        if isinstance(content, str):
            segments.append(f"{role}: {content}")
        elif isinstance(content, list):
            segments.append(f"{role}:")
            for block_index, block in enumerate(content):
                add(_block_text(block, f"{where}.content.{block_index}"), block)
        else:
            raise invalid(f"{where}.content: Input should be a valid string or list of blocks")

    if len(breakpoints) > MAX_CACHE_BREAKPOINTS:
        raise invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(breakpoints)}."
        )
    last = messages[-1].get("content")
    after_tool = isinstance(last, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last
    )
    return Prompt(segments, breakpoints, after_tool)


def _sampling(body: dict[str, Any], *, in_batch: bool) -> tuple[list[str] | None, bool]:
    """(stop_sequences, stream) after the sampling checks count_tokens has no use for."""
    _check_range(body, "temperature", 0, 1)
    _check_range(body, "top_p", 0, 1)
    top_k = body.get("top_k")
    if top_k is not None and not (is_int(top_k) and top_k >= 0):
        raise invalid("top_k: Input should be an integer greater than or equal to 0")
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise invalid("stop_sequences: Input should be a valid list of strings")
        stop = [s for s in stop if s] or None
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream: Input should be a valid boolean")
    if in_batch and stream:
        raise invalid("stream: streaming is not supported for requests in a message batch")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata: Input should be a valid dictionary")
    return stop, bool(stream)


def parse_messages(
    body: dict[str, Any], models: dict[str, int], *, in_batch: bool = False
) -> MessagesRequest:
    """A checked Messages request, or an AnthropicError whose message names the field."""
    model = _model_field(body)
    max_tokens = _max_tokens(body)
    prompt = _parse_prompt(body)
    stop, stream = _sampling(body, in_batch=in_batch)
    _known_model(model, models)
    if max_tokens > models[model]:
        raise invalid(
            f"max_tokens: {max_tokens} > {models[model]}, which is the maximum allowed number "
            f"of output tokens for {model}"
        )
    tools, schema, thinking = _answer_options(body, prompt, max_tokens)
    return MessagesRequest(
        model=model,
        segments=prompt.segments,
        breakpoints=prompt.breakpoints,
        max_tokens=max_tokens,
        stop=stop,
        stream=stream,
        tools=tools,
        schema=schema,
        thinking=thinking,
    )


def count_message_tokens(body: dict[str, Any], models: dict[str, int]) -> int:
    """count_tokens: the checks /v1/messages makes of the same fields (no max_tokens), then
    the prompt tokens it would bill."""
    model = _model_field(body)
    prompt = _parse_prompt(body)
    _known_model(model, models)
    _answer_options(body, prompt, None)
    return prompt_tokens(prompt.segments)


def _answer_options(
    body: dict[str, Any], prompt: Prompt, max_tokens: int | None
) -> tuple[list[dict] | None, dict | None, ThinkingConfig | None]:
    """(tools called, output schema, thinking): the fields that shape the answer, checked the
    same for /v1/messages and count_tokens (which has no max_tokens to check a budget against)."""
    last = prompt.segments[-1] if prompt.segments else ""
    tools = _called_tools(body, after_tool=prompt.after_tool, prompt=last)
    return tools, _output_schema(body), _thinking(body, max_tokens)


def _called_tools(body: dict[str, Any], *, after_tool: bool, prompt: str) -> list[dict] | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and "input_schema" in t]
    choice = body.get("tool_choice")
    if choice is not None and not (isinstance(choice, dict) and "type" in choice):
        raise invalid("tool_choice: Input should be a valid dictionary with a type")
    kind = (choice or {}).get("type", "auto")
    if kind not in ("auto", "any", "tool", "none"):
        raise invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    names = {t.get("name") for t in tools}
    if kind == "tool" and choice.get("name") not in names:
        raise invalid(f"tool_choice.name: Tool '{choice.get('name')}' not found in tools")
    as_openai = [
        {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
        for t in tools
    ]
    openai_choice = {
        "auto": "auto",
        "any": "required",
        "none": "none",
        "tool": {"type": "function", "function": {"name": (choice or {}).get("name")}},
    }[kind]
    picked = chosen_tools(
        as_openai,
        openai_choice,
        last_role="tool" if after_tool else "user",
        prompt=prompt,
        parallel=not (choice or {}).get("disable_parallel_tool_use"),
    )
    return picked or None


def _output_schema(body: dict[str, Any]) -> dict | None:
    """output_config.format's schema, else the beta top-level output_format's (LiteLLM still
    sends that with `anthropic-beta: structured-outputs-2025-11-13`); the GA field wins."""
    config = body.get("output_config")
    if config is not None and not isinstance(config, dict):
        raise invalid("output_config: Input should be a valid dictionary")
    fmt = (config or {}).get("format")
    if fmt is not None:
        return _format_schema(fmt, "output_config.format")
    beta = body.get("output_format")
    return None if beta is None else _format_schema(beta, "output_format")


def _format_schema(fmt: Any, where: str) -> dict:
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise invalid(f"{where}.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise invalid(f"{where}.schema: Field required")
    return schema


def _thinking(body: dict[str, Any], max_tokens: int | None) -> ThinkingConfig | None:
    """The thinking config checked as Anthropic does, or None when thinking is off."""
    config = body.get("thinking")
    if config is None:
        return None
    if not isinstance(config, dict):
        raise invalid("thinking: Input should be a valid dictionary")
    kind = config.get("type")
    if kind == "disabled":
        return None
    if kind not in ("enabled", "adaptive", "between_tools"):
        raise invalid(
            "thinking.type: Input should be 'enabled', 'adaptive', 'disabled' or 'between_tools'"
        )
    display = config.get("display")
    if display not in (None, "summarized", "omitted"):
        raise invalid("thinking.display: Input should be 'summarized' or 'omitted'")
    budget = _thinking_budget(config, max_tokens) if kind == "enabled" else None
    forced = body.get("tool_choice") or {}
    if forced.get("type") in ("any", "tool"):
        raise invalid("Thinking may not be enabled when tool_choice forces tool use.")
    return ThinkingConfig(budget, display != "omitted")


def _thinking_budget(config: dict[str, Any], max_tokens: int | None) -> int:
    budget = config.get("budget_tokens")
    if budget is None:
        raise invalid("thinking.budget_tokens: Field required")
    if not is_int(budget):
        raise invalid("thinking.budget_tokens: Input should be a valid integer")
    if budget < MIN_THINKING_BUDGET:
        raise invalid(
            f"thinking.budget_tokens: Input should be greater than or equal to "
            f"{MIN_THINKING_BUDGET}"
        )
    # Thinking tokens count towards max_tokens, so the answer needs room after the budget.
    # count_tokens has no max_tokens: this waits for /v1/messages.
    if max_tokens is not None and budget >= max_tokens:
        raise invalid("max_tokens must be greater than thinking.budget_tokens")
    return budget


@dataclass(slots=True)
class Thought:
    """A thinking block, kept small like Choice: its text is re-derived from the seed."""

    seed: int
    words: int  # = its output tokens, shown or not
    shown: bool

    @property
    def text(self) -> str:
        return corpus_text(self.seed, self.words) if self.shown else ""

    @property
    def signature(self) -> str:
        # Opaque to clients, who echo it back unchanged: any stable base64 will do.
        digest = hashlib.blake2b(f"{self.seed}:{self.words}".encode(), digest_size=48).digest()
        return base64.b64encode(digest).decode()

    def block(self) -> dict[str, Any]:
        return {"type": "thinking", "thinking": self.text, "signature": self.signature}


@dataclass(slots=True)
class MessagePlan:
    """A Messages answer worked out once. `input_tokens` excludes both cache buckets."""

    model: str
    input_tokens: int
    cache_read: int
    cache_creation: int
    choice: Choice
    thinking: Thought | None = None

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read + self.cache_creation

    @property
    def output_tokens(self) -> int:
        return self.choice.output_tokens + (self.thinking.words if self.thinking else 0)


def plan_message(state: SimState, request: MessagesRequest) -> MessagePlan:
    total = prompt_tokens(request.segments)
    read = created = 0
    if request.breakpoints:
        read, created = state.cache.anthropic_cache(
            request.model, request.segments, request.breakpoints
        )
    settings = state.config.for_model(request.model)
    seed = prompt_seed(request.model, "\n".join(request.segments))
    thought = _thought(seed, request)
    # Thinking tokens count towards max_tokens: the answer gets what is left.
    room = request.max_tokens - (thought.words if thought else 0)
    if request.tools:
        choice = tool_choice(seed, request.tools, ids="toolu_")
    elif request.schema is not None:
        choice = json_choice(seed, request.schema, room)
    else:
        wanted = settings.output_tokens or output_length(
            seed, settings.min_output_tokens, settings.max_output_tokens
        )
        choice = generate(seed, wanted=wanted, max_tokens=room, stop=request.stop)
    return MessagePlan(request.model, total - read - created, read, created, choice, thought)


def _thought(seed: int, request: MessagesRequest) -> Thought | None:
    """The thinking block of a request that thinks: its length drawn from the prompt seed,
    within the budget and leaving the answer at least one of max_tokens."""
    config = request.thinking
    if config is None:
        return None
    thinking_seed = derive_seed(seed, _THINKING_SEED)
    words = output_length(thinking_seed, *THINKING_WORDS)
    words = min(words, config.budget or words, request.max_tokens - 1)
    return Thought(thinking_seed, words, config.shown)


def content_json(choice: Choice) -> list[dict[str, Any]]:
    """A choice's content blocks: its text, or a tool_use block per call."""
    if choice.tool_calls:
        return [
            {
                "type": "tool_use",
                "id": call["id"],
                "name": call["function"]["name"],
                "input": json.loads(call["function"]["arguments"]),
            }
            for call in choice.tool_calls
        ]
    return [{"type": "text", "text": choice.text}]


def usage_json(plan: MessagePlan, output_tokens: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": plan.input_tokens,
        "cache_creation_input_tokens": plan.cache_creation,
        "cache_read_input_tokens": plan.cache_read,
        "output_tokens": plan.output_tokens if output_tokens is None else output_tokens,
        "service_tier": "standard",
    }


def message_json(message_id: str, plan: MessagePlan) -> dict[str, Any]:
    choice = plan.choice
    thinking = [plan.thinking.block()] if plan.thinking else []
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": thinking + content_json(choice),
        "stop_reason": _STOP_REASONS[choice.finish],
        "stop_sequence": choice.stop_sequence,
        "usage": usage_json(plan),
    }


def _block_deltas(plan: MessagePlan) -> list[tuple[dict, list[tuple[dict, int]]]]:
    """Each content block as streamed: (its content_block_start payload, its (delta, tokens)
    events), in content order so the SDK's content[index] lines up."""
    blocks = []
    thought = plan.thinking
    if thought is not None:
        deltas = [({"type": "thinking_delta", "thinking": p}, 1) for p in pieces(thought.text)]
        # The signature closes the thought; an omitted thought's tokens ride on it, so a
        # stream cut after it is billed for them.
        hidden = 0 if thought.shown else thought.words
        deltas.append(({"type": "signature_delta", "signature": thought.signature}, hidden))
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    choice = plan.choice
    if not choice.tool_calls:
        text = [({"type": "text_delta", "text": p}, 1) for p in pieces(choice.text)]
        return [*blocks, ({"type": "text", "text": ""}, text)]
    for block in content_json(choice):
        arguments = json.dumps(block["input"], separators=(",", ":"))
        parts = [arguments[i : i + 12] for i in range(0, len(arguments), 12)] or [""]
        deltas = [({"type": "input_json_delta", "partial_json": p}, 1) for p in parts]
        blocks.append(({**block, "input": {}}, deltas))
    return blocks


def _stream_blocks(plan: MessagePlan) -> tuple[bytes, list[bytes], list[int], bytes]:
    """(opening, events, each event's tokens, closing). The first block's start opens the
    stream; each delta is one paced event, with the stop and start between two blocks riding
    in front of the next delta; the last block's stop closes the content."""

    def start(index: int, block: dict) -> bytes:
        return sse_event(
            "content_block_start",
            dumps({"type": "content_block_start", "index": index, "content_block": block}),
        )

    def stop(index: int) -> bytes:
        return sse_event("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}')

    blocks = _block_deltas(plan)
    events: list[bytes] = []
    weights: list[int] = []
    pending = b""
    for index, (block, deltas) in enumerate(blocks):
        if index:
            pending += stop(index - 1) + start(index, block)
        for body, tokens in deltas:
            payload = {"type": "content_block_delta", "index": index, "delta": body}
            events.append(pending + sse_event("content_block_delta", dumps(payload)))
            weights.append(tokens)
            pending = b""
    return start(0, blocks[0][0]), events, weights, pending + stop(len(blocks) - 1)


def bill_message(
    state: SimState, plan: MessagePlan, mode: str, output_tokens: int | None = None
) -> None:
    state.usage.add(
        "anthropic",
        plan.model,
        mode,
        input_tokens=plan.prompt_tokens,
        cached_input_tokens=plan.cache_read,
        cache_creation_tokens=plan.cache_creation,
        output_tokens=plan.output_tokens if output_tokens is None else output_tokens,
    )


STREAM_ERROR = sse_event(
    "error",
    dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
)


def list_query(query: Mapping[str, str]) -> tuple[str | None, str | None, int]:
    """(after_id, before_id, limit) of an Anthropic list request."""
    raw = query.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise invalid("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise invalid("limit: Input should be between 1 and 1000")
    after, before = query.get("after_id"), query.get("before_id")
    if after and before:
        raise invalid("after_id and before_id cannot both be given")
    return after, before, limit


def model_json(model: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model,
        "display_name": model.replace("-", " ").title(),
        "created_at": rfc3339(MODEL_CREATED),
        "lifecycle": "active",
    }


class AnthropicMessages:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        state = self.state
        return [
            web.post("/anthropic/v1/messages", endpoint(state, "messages", self.create)),
            web.post(
                "/anthropic/v1/messages/count_tokens",
                endpoint(state, "messages", self.count_tokens),
            ),
            web.get("/anthropic/v1/models", endpoint(state, "models", self.list_models)),
            web.get("/anthropic/v1/models/{model}", endpoint(state, "models", self.get_model)),
        ]

    async def create(self, request: web.Request, rid: str) -> web.StreamResponse:
        state = self.state
        body = read_json(await request.read())
        fault = state.inference_fault("anthropic", "messages", body)
        if fault is not None and fault.kind == "error":
            raise fault_error(fault)
        parsed = parse_messages(body, state.config.models["anthropic"])
        plan = plan_message(state, parsed)
        settings = state.config.for_model(parsed.model)
        message_id = state.ids.make("msg_")
        if parsed.stream:
            return await self._stream(request, rid, message_id, plan, fault)
        tps = settings.tokens_per_s
        delay = settings.ttft_s + (plan.output_tokens / tps if tps else 0)
        if fault is not None:
            delay += fault.stall_s
        await pause(delay)
        bill_message(state, plan, "realtime")
        return json_response(message_json(message_id, plan), rid)

    async def count_tokens(self, request: web.Request, rid: str) -> web.Response:
        """{"input_tokens": N}, N what /v1/messages would bill as prompt for the same body.
        Free, and it leaves the prompt cache alone: counting is not a cache write."""
        state = self.state
        body = read_json(await request.read())
        # Messages' error and stall faults hit it too (it is the same service); stream
        # faults cannot, as there is no stream.
        model = body.get("model")
        fault = state.fault(
            "anthropic", "messages", model if isinstance(model, str) else None, ("error", "stall")
        )
        if fault is not None:
            if fault.kind == "error":
                raise fault_error(fault)
            await pause(fault.stall_s)
        tokens = count_message_tokens(body, state.config.models["anthropic"])
        return json_response({"input_tokens": tokens}, rid)

    async def _stream(
        self,
        request: web.Request,
        rid: str,
        message_id: str,
        plan: MessagePlan,
        fault: Fault | None,
    ) -> web.StreamResponse:
        settings = self.state.config.for_model(plan.model)
        choice = plan.choice
        start_usage = usage_json(plan, output_tokens=1)
        opening, events, weights, closing = _stream_blocks(plan)
        head = b"".join(
            (
                sse_event(
                    "message_start",
                    dumps(
                        {
                            "type": "message_start",
                            "message": {
                                "id": message_id,
                                "type": "message",
                                "role": "assistant",
                                "model": plan.model,
                                "content": [],
                                "stop_reason": None,
                                "stop_sequence": None,
                                "usage": start_usage,
                            },
                        }
                    ),
                ),
                opening,
                sse_event("ping", '{"type":"ping"}'),
            )
        )
        final_usage = usage_json(plan)
        del final_usage["service_tier"]
        tail = b"".join(
            (
                closing,
                sse_event(
                    "message_delta",
                    dumps(
                        {
                            "type": "message_delta",
                            "delta": {
                                "stop_reason": _STOP_REASONS[choice.finish],
                                "stop_sequence": choice.stop_sequence,
                            },
                            "usage": final_usage,
                        }
                    ),
                ),
                sse_event("message_stop", '{"type":"message_stop"}'),
            )
        )
        await pause(settings.ttft_s)
        resp, _ = await serve_stream(
            request,
            headers={"request-id": rid},
            weights=weights,
            fault=fault,
            head=head,
            events=events,
            tail=tail,
            error_event=STREAM_ERROR,
            tokens_per_s=settings.tokens_per_s,
            bill=lambda tokens: bill_message(self.state, plan, "stream", tokens),
        )
        return resp

    async def list_models(self, request: web.Request, rid: str) -> web.Response:
        models = list(self.state.config.models["anthropic"])
        start, end, has_more = page_window(models, *list_query(request.query))
        page = [model_json(m) for m in models[start:end]]
        return json_response(
            {
                "data": page,
                "has_more": has_more,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            },
            rid,
        )

    async def get_model(self, request: web.Request, rid: str) -> web.Response:
        model = request.match_info["model"]
        if model not in self.state.config.models["anthropic"]:
            raise AnthropicError(404, f"model: {model}", type="not_found_error")
        return json_response(model_json(model), rid)
