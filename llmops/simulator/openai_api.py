"""OpenAI dialect: chat completions (plain and streamed), models, errors.

Request checks and messages follow the real API closely enough that the SDK
raises the same exception classes; `param` and the message name the field.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llmops.simulator.state import Fault, SimState
from llmops.simulator.structured import chosen_tools, json_choice, tool_choice
from llmops.simulator.textgen import (
    Choice,
    derive_seed,
    generate,
    output_length,
    pieces,
    prompt_seed,
    tokens,
)
from llmops.simulator.wire import (
    JSON_TYPE,
    SSE_HEADERS,
    StreamFault,
    StreamProgress,
    api_key,
    dump_bytes,
    dumps,
    is_int,
    is_number,
    pause,
    sse_data,
    write_stream,
)

log = logging.getLogger(__name__)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_ROLE_LIST = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
# Per-prompt overhead on top of the text tokens (the reply priming).
PROMPT_OVERHEAD_TOKENS = 3
MODEL_CREATED = 1_700_000_000

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}

Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), "an object")


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid_type(param: str, expected: str, value: object) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def missing(param: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def required_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise OpenAIError(400, "you must provide a model parameter", param="model")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    return model


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_FAULT_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Simulated bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to perform this request."),
    404: ("invalid_request_error", None, "Not found."),
    408: ("timeout", None, "Request timed out."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: ("server_error", None, SERVER_ERROR),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}


SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast")
FLEX_UNAVAILABLE = (
    "Resource Unavailable: flex processing capacity is temporarily exhausted; retry later or "
    "use the default tier."
)


def tier_used(tier: str | None) -> str:
    """The tier a response reports (the one actually used): the project default for auto or
    none, priority for its alias fast, the asked one otherwise."""
    return {None: "default", "auto": "default", "fast": "priority"}.get(tier, tier)


def admit_tier(state: SimState, model: str, tier: str) -> float:
    """Refuse what the tier refuses; else the extra wait it adds before the first byte.

    Flex: a 400 for a model without flex processing, then a 429 Resource Unavailable for a
    `flex_unavailable_rate` share of calls (drawn before anything is planned, cached or billed:
    the real API does not charge it), else `flex_delay_ms`.
    """
    if tier != "flex":
        return 0.0
    if model not in state.config.flex_models:
        raise OpenAIError(
            400,
            f"Flex processing is not available for model {model}.",
            param="service_tier",
            code="unsupported_value",
        )
    settings = state.config.for_model(model)
    rate = settings.flex_unavailable_rate
    if rate > 0 and state.flex_rng.random() < rate:
        # Type and code as a rate-limit 429 has them ([UNCONFIRMED] for flex): no retry-after,
        # so the SDKs back off on their own schedule.
        raise OpenAIError(429, FLEX_UNAVAILABLE, type="requests", code="resource_unavailable")
    return settings.flex_delay_s


def mode_for(tier: str, mode: str) -> str:
    """The usage book's mode for an answer: flex usage is kept apart (priced at flex rates)."""
    return "flex" if tier == "flex" else mode


def fault_error(fault: Fault) -> OpenAIError:
    status = fault.status or 500
    default = _FAULT_DEFAULTS.get(status)
    if default is None:
        default = _FAULT_DEFAULTS[500] if status >= 500 else _FAULT_DEFAULTS[400]
    kind, code, message = default
    return OpenAIError(
        status,
        fault.message or message,
        type=fault.error_type or kind,
        code=fault.code or code,
        headers=fault.headers(),
    )


def json_response(
    body: object, rid: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    all_headers = {"x-request-id": rid}
    if headers:
        all_headers.update(headers)
    return web.Response(
        body=dump_bytes(body), status=status, content_type=JSON_TYPE, headers=all_headers
    )


def error_response(exc: OpenAIError, rid: str) -> web.Response:
    return json_response(exc.body(), rid, exc.status, exc.headers)


def read_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise OpenAIError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
        ) from None
    if not isinstance(body, dict):
        raise OpenAIError(
            400, f"Invalid type for the request body: expected an object, got {type_name(body)}."
        )
    return body


_MODEL_FAULTED = ("chat", "embeddings", "responses")


def endpoint(state: SimState, name: str, fn: Handler) -> Callable[[web.Request], Awaitable[Any]]:
    """Auth, request id, injected errors and error rendering around an OpenAI route.

    Chat, embeddings and responses do their own fault matching: a fault may name the model
    they ask for.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        rid = state.ids.make("req_")
        if api_key(request) is None:
            return error_response(
                OpenAIError(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                ),
                rid,
            )
        try:
            if name not in _MODEL_FAULTED and state.faults.faults:
                fault = state.fault("openai", name, None, ("error", "stall"))
                if fault is not None:
                    if fault.kind == "error":
                        raise fault_error(fault)
                    await pause(fault.stall_s)
            return await fn(request, rid)
        except OpenAIError as exc:
            return error_response(exc, rid)
        except Exception:
            log.exception("simulator: unhandled error in OpenAI %s", request.path)
            return error_response(
                OpenAIError(500, _FAULT_DEFAULTS[500][2], type="server_error"), rid
            )

    return handler


@dataclass(slots=True)
class ChatCall:
    model: str
    prompt: str
    max_tokens: int | None
    n: int
    stop: list[str] | None
    stream: bool
    include_usage: bool
    tools: list[dict] | None = None  # the tools called (chosen_tools), if any
    schema: dict | None = None  # the JSON schema the content must follow ({} for json_object)
    logprobs: int | None = None  # top_logprobs per token when logprobs is on
    seed: int | None = None
    image_tokens: int = 0
    service_tier: str = "default"  # the tier used (tier_used): default, flex, priority, scale


# What an image part costs in prompt tokens (gpt-4o's 512 px tiles: 85 at low detail, a
# 1024 x 1024 image's 765 otherwise).
IMAGE_TOKENS = {"low": 85}
IMAGE_TOKENS_DEFAULT = 765


def _content_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid_type(param, "one of a string or array of objects", content)
    parts: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict):
            raise invalid_type(f"{param}[{index}]", "an object", part)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise missing(f"{param}[{index}].text")
            parts.append(text)
        elif kind == "refusal":
            parts.append(str(part.get("refusal", "")))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url:
                raise missing(f"{param}[{index}].image_url.url")
            parts.append(f"<image:{image.get('detail') or 'auto'}>")
        elif isinstance(kind, str):
            parts.append(f"<{kind}>")
        else:
            raise missing(f"{param}[{index}].type")
    return "\n".join(parts)


def checked_stream_options(body: dict[str, Any], stream) -> dict | None:
    """`stream_options`, which OpenAI takes only with `stream` and only as an object."""
    stream_options = body.get("stream_options")
    if stream_options is None:
        return None
    if not stream:
        raise OpenAIError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    if not isinstance(stream_options, dict):
        raise invalid_type("stream_options", "an object", stream_options)
    return stream_options


def bounded_number(body: dict[str, Any], key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if not is_number(value):
        raise invalid_type(key, "a decimal", value)
    if value < low:
        raise OpenAIError(
            400,
            f"Invalid '{key}': decimal below minimum value. "
            f"Expected a value >= {low:g}, but got {value} instead.",
            param=key,
            code="decimal_below_min_value",
        )
    if value > high:
        raise OpenAIError(
            400,
            f"Invalid '{key}': decimal above maximum value. "
            f"Expected a value <= {high:g}, but got {value} instead.",
            param=key,
            code="decimal_above_max_value",
        )


def bounded_int(body: dict[str, Any], key: str, low: int, high: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not is_int(value):
        raise invalid_type(key, "an integer", value)
    if value < low:
        raise OpenAIError(
            400,
            f"Invalid '{key}': integer below minimum value. "
            f"Expected a value >= {low}, but got {value} instead.",
            param=key,
            code="integer_below_min_value",
        )
    if high is not None and value > high:
        raise OpenAIError(
            400,
            f"Invalid '{key}': integer above maximum value. "
            f"Expected a value <= {high}, but got {value} instead.",
            param=key,
            code="integer_above_max_value",
        )
    return value


def parse_chat(body: dict[str, Any], models: dict[str, int], *, in_batch: bool = False) -> ChatCall:
    """A checked chat request with its canonical prompt, or an OpenAIError naming the field."""
    model = required_model(body)
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise OpenAIError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    lines: list[str] = []
    tools = body.get("tools")
    if tools:
        lines.append("tools: " + dumps(tools))
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise missing(f"{where}.role")
        if role not in ROLES:
            raise OpenAIError(
                400,
                f"Invalid value for '{where}.role': {role!r}. Supported values are: {_ROLE_LIST}.",
                param=f"{where}.role",
                code="invalid_value",
            )
        content = message.get("content")
        if content is None:
            if role != "assistant" or not (
                message.get("tool_calls") or message.get("function_call")
            ):
                raise missing(f"{where}.content")
            text = ""
        else:
            text = _content_text(content, f"{where}.content")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise missing(f"{where}.tool_call_id")
        if message.get("tool_calls"):
            text += " " + dumps(message["tool_calls"])
        lines.append(f"{role}: {text}")

    if model not in models:
        raise model_not_found(model)
    max_tokens = bounded_int(body, "max_completion_tokens", 1, None)
    param = "max_completion_tokens"
    if max_tokens is None:
        max_tokens = bounded_int(body, "max_tokens", 1, None)
        param = "max_tokens"
    if max_tokens is not None and max_tokens > models[model]:
        raise OpenAIError(
            400,
            f"{param} is too large: {max_tokens}. This model supports at most "
            f"{models[model]} completion tokens, whereas you provided {max_tokens}.",
            param=param,
            code="invalid_value",
        )
    bounded_number(body, "temperature", 0, 2)
    bounded_number(body, "top_p", 0, 1)
    n = bounded_int(body, "n", 1, 128) or 1

    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        elif not (
            isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop)
        ):
            raise invalid_type("stop", "a string or an array of at most 4 strings", stop)
        stop = [s for s in stop if s] or None

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_type("stream", "a boolean", stream)
    stream_options = checked_stream_options(body, stream)
    include_usage = False
    if stream_options is not None:
        include = stream_options.get("include_usage")
        if include is not None and not isinstance(include, bool):
            raise invalid_type("stream_options.include_usage", "a boolean", include)
        include_usage = bool(include)
    if in_batch and stream:
        raise OpenAIError(
            400, "'stream' is not supported in the Batch API.", param="stream", code="invalid_value"
        )
    tier = body.get("service_tier")
    if tier is not None and tier not in SERVICE_TIERS:
        if not isinstance(tier, str):
            raise invalid_type("service_tier", "a string", tier)
        raise OpenAIError(
            400,
            f"Invalid value: {tier!r}. Supported values are: "
            + ", ".join(repr(t) for t in SERVICE_TIERS[:-1])
            + f" and {SERVICE_TIERS[-1]!r}.",
            param="service_tier",
            code="invalid_value",
        )
    prompt = "\n".join(lines)
    last_role = messages[-1].get("role")
    return ChatCall(
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        n=n,
        stop=stop,
        stream=bool(stream),
        include_usage=include_usage,
        tools=_called_tools(body, last_role=last_role, prompt=prompt) or None,
        schema=_response_schema(body, prompt),
        logprobs=_logprobs(body),
        seed=bounded_int(body, "seed", -(2**63), 2**63 - 1),
        image_tokens=sum(
            IMAGE_TOKENS.get(detail, IMAGE_TOKENS_DEFAULT) for detail in _IMAGE_MARK.findall(prompt)
        ),
        service_tier=tier_used(tier),
    )


_IMAGE_MARK = re.compile(r"<image:(\w+)>")
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def bad_tool_name(param: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid '{param}': string does not match pattern. Expected a string that matches "
        "the pattern '^[a-zA-Z0-9_-]+$'.",
        param=param,
        code="invalid_value",
    )


def no_such_function(name) -> OpenAIError:
    """A tool_choice naming a function the request's tools do not have."""
    return OpenAIError(
        400,
        f"Invalid value for 'tool_choice': no function named {name!r} was specified in the "
        "'tools' parameter.",
        param="tool_choice",
        code="invalid_value",
    )


def _called_tools(body: dict[str, Any], *, last_role: str, prompt: str) -> list[dict]:
    """The tools checked as OpenAI checks them, and those this answer calls."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None:
        if choice not in (None, "none"):
            raise OpenAIError(
                400,
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified.",
                param="tool_choice",
                code="invalid_value",
            )
        return []
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    names = set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        if tool.get("type", "function") != "function":
            continue
        function = tool.get("function")
        if not isinstance(function, dict):
            raise missing(f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise bad_tool_name(f"{where}.function.name")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid_type(f"{where}.function.parameters", "an object", parameters)
        names.add(name)
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            raise no_such_function(name)
    elif choice not in (None, "none", "auto", "required"):
        raise OpenAIError(
            400,
            f"Invalid value for 'tool_choice': {choice!r}.",
            param="tool_choice",
            code="invalid_value",
        )
    return chosen_tools(
        tools,
        choice if choice is not None else "auto",
        last_role=last_role,
        prompt=prompt.rsplit("\n", 1)[-1],
        parallel=body.get("parallel_tool_calls", True) is not False,
    )


def _response_schema(body: dict[str, Any], prompt: str) -> dict | None:
    """The schema a response_format asks the content to follow ({} for any JSON object)."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise invalid_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        if "json" not in prompt.lower():
            raise OpenAIError(
                400,
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
                code=None,
            )
        return {}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise missing("response_format.json_schema")
        if not isinstance(spec.get("name"), str):
            raise missing("response_format.json_schema.name")
        schema = spec.get("schema")
        if schema is not None and not isinstance(schema, dict):
            raise invalid_type("response_format.json_schema.schema", "an object", schema)
        return schema or {"type": "object", "properties": {}}
    raise OpenAIError(
        400,
        f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object' and 'json_schema'.",
        param="response_format.type",
        code="invalid_value",
    )


def _logprobs(body: dict[str, Any]) -> int | None:
    top = bounded_int(body, "top_logprobs", 0, 20)
    on = body.get("logprobs")
    if on is not None and not isinstance(on, bool):
        raise invalid_type("logprobs", "a boolean", on)
    if top is not None and not on:
        raise OpenAIError(
            400,
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true.",
            param="top_logprobs",
            code="invalid_value",
        )
    return (top or 0) if on else None


@dataclass(slots=True)
class ChatPlan:
    """Everything a chat answer needs, worked out once: usage and every choice's text."""

    model: str
    prompt_tokens: int
    cached_tokens: int
    choices: list[Choice]
    logprobs: int | None = None  # top_logprobs per token, when logprobs is on

    @property
    def completion_tokens(self) -> int:
        return sum(choice.output_tokens for choice in self.choices)


def plan_chat(state: SimState, request: ChatCall) -> ChatPlan:
    """Usage and answers for a request; consults and feeds the prompt cache."""
    prompt_tokens = tokens(request.prompt)
    cached = state.cache.openai_cached_tokens(request.model, prompt_tokens)
    settings = state.config.for_model(request.model)
    seed = prompt_seed(request.model, f"{request.seed}\x00{request.prompt}")
    choices: list[Choice] = []
    for index in range(request.n):
        choice_seed = derive_seed(seed, index) if index else seed
        if request.tools:
            choices.append(tool_choice(choice_seed, request.tools))
            continue
        if request.schema is not None:
            choices.append(json_choice(choice_seed, request.schema, request.max_tokens))
            continue
        wanted = settings.output_tokens or output_length(
            choice_seed, settings.min_output_tokens, settings.max_output_tokens
        )
        choices.append(
            generate(choice_seed, wanted=wanted, max_tokens=request.max_tokens, stop=request.stop)
        )
    prompt_total = len(prompt_tokens) + PROMPT_OVERHEAD_TOKENS + request.image_tokens
    return ChatPlan(request.model, prompt_total, cached, choices, request.logprobs)


def finish_reason(choice: Choice) -> str:
    if choice.finish == "tool_calls":
        return "tool_calls"
    return "length" if choice.finish == "length" else "stop"


def logprobs_json(text: str, top: int) -> dict[str, Any]:
    """Per-token log probabilities for a text (one entry per word piece)."""
    entries = []
    for piece in pieces(text):
        raw = list(piece.encode())
        logprob = -round((len(piece) % 7) * 0.013 + 0.001, 4)
        alternatives = [{"token": piece, "logprob": logprob, "bytes": raw}]
        alternatives += [
            {"token": f"{piece}{i}", "logprob": logprob - 1.5 * i, "bytes": [*raw, 48 + i]}
            for i in range(1, top)
        ]
        entries.append(
            {"token": piece, "logprob": logprob, "bytes": raw, "top_logprobs": alternatives[:top]}
        )
    return {"content": entries, "refusal": None}


def usage_json(plan: ChatPlan, completion_tokens: int | None = None) -> dict[str, Any]:
    completion = plan.completion_tokens if completion_tokens is None else completion_tokens
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": plan.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_json(
    completion_id: str, created: int, plan: ChatPlan, service_tier: str = "default"
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": plan.model,
        "choices": [
            {
                "index": index,
                "message": _message(choice),
                "logprobs": None
                if plan.logprobs is None or choice.tool_calls
                else logprobs_json(choice.text, plan.logprobs),
                "finish_reason": finish_reason(choice),
            }
            for index, choice in enumerate(plan.choices)
        ],
        "usage": usage_json(plan),
        "service_tier": service_tier,
        "system_fingerprint": "fp_simulator",
    }


def _stream_deltas(choice: Choice, top_logprobs: int | None) -> list[tuple[str, str]]:
    """(delta JSON, logprobs JSON) of each streamed piece of a choice: a word of text, or a
    tool call's head (id, type and name, once) and then its arguments in pieces."""
    if choice.tool_calls:
        deltas = []
        for index, call in enumerate(choice.tool_calls):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            deltas.append(dumps({"tool_calls": [head]}))
            arguments = call["function"]["arguments"]
            for start in range(0, len(arguments), 12):
                piece = {"index": index, "function": {"arguments": arguments[start : start + 12]}}
                deltas.append(dumps({"tool_calls": [piece]}))
        return [(delta, "null") for delta in deltas]
    return [
        (
            f'{{"content":{dumps(piece)}}}',
            "null"
            if top_logprobs is None
            else dumps({"content": logprobs_json(piece, top_logprobs)["content"], "refusal": None}),
        )
        for piece in pieces(choice.text)
    ]


def _message(choice: Choice) -> dict[str, Any]:
    if choice.tool_calls:
        return {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
            "tool_calls": list(choice.tool_calls),
        }
    return {"role": "assistant", "content": choice.text, "refusal": None, "annotations": []}


def bill_chat(state: SimState, plan: ChatPlan, mode: str, output_tokens: int | None = None) -> None:
    state.usage.add(
        "openai",
        plan.model,
        mode,
        input_tokens=plan.prompt_tokens,
        cached_input_tokens=plan.cached_tokens,
        output_tokens=plan.completion_tokens if output_tokens is None else output_tokens,
    )


STREAM_ERROR = sse_data(
    dumps({"error": {"message": SERVER_ERROR, "type": "server_error", "param": None, "code": None}})
)


class OpenAIChat:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        state = self.state
        return [
            web.post("/openai/v1/chat/completions", endpoint(state, "chat", self.chat)),
            web.get("/openai/v1/models", endpoint(state, "models", self.list_models)),
            web.get("/openai/v1/models/{model}", endpoint(state, "models", self.get_model)),
        ]

    async def chat(self, request: web.Request, rid: str) -> web.StreamResponse:
        state = self.state
        body = read_json(await request.read())
        fault = state.inference_fault("openai", "chat", body)
        if fault is not None and fault.kind == "error":
            raise fault_error(fault)
        model = body.get("model")
        if isinstance(model, str) and model in state.config.embedding_models:
            # What OpenAI answers when a chat request names an embedding model.
            raise OpenAIError(
                404,
                "This is not a chat model and thus not supported in the v1/chat/completions "
                "endpoint. Did you mean to use v1/completions?",
                param="model",
            )
        parsed = parse_chat(body, state.config.models["openai"])
        tier_delay = admit_tier(state, parsed.model, parsed.service_tier)
        plan = plan_chat(state, parsed)
        settings = state.config.for_model(parsed.model)
        completion_id = state.ids.make("chatcmpl-")
        created = int(state.clock.now())
        if parsed.stream:
            return await self._stream(
                request, rid, completion_id, created, parsed, plan, fault, tier_delay
            )
        longest = max(choice.output_tokens for choice in plan.choices)
        delay = settings.ttft_s + (longest / settings.tokens_per_s if settings.tokens_per_s else 0)
        delay += tier_delay
        if fault is not None:
            delay += fault.stall_s
        await pause(delay)
        bill_chat(state, plan, mode_for(parsed.service_tier, "realtime"))
        answer = completion_json(completion_id, created, plan, parsed.service_tier)
        return json_response(answer, rid)

    async def _stream(
        self,
        request: web.Request,
        rid: str,
        completion_id: str,
        created: int,
        parsed: ChatCall,
        plan: ChatPlan,
        fault: Fault | None,
        tier_delay: float,
    ) -> web.StreamResponse:
        settings = self.state.config.for_model(parsed.model)
        usage_tail = ',"usage":null}' if parsed.include_usage else "}"
        prefix = (
            f'data: {{"id":"{completion_id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{dumps(plan.model)},"service_tier":"{parsed.service_tier}",'
            '"system_fingerprint":"fp_simulator","choices":['
        )
        head = "".join(
            f'{prefix}{{"index":{index},"delta":{{"role":"assistant",'
            f'"content":{"null" if choice.tool_calls else chr(34) * 2},"refusal":null}},'
            f'"logprobs":null,"finish_reason":null}}]{usage_tail}\n\n'
            for index, choice in enumerate(plan.choices)
        ).encode()
        choice_pieces = [_stream_deltas(choice, plan.logprobs) for choice in plan.choices]
        steps = max((len(p) for p in choice_pieces), default=0)
        events: list[bytes] = []
        weights: list[int] | None = [] if len(plan.choices) > 1 else None
        for step in range(steps):
            chunk = []
            for index, choice in enumerate(choice_pieces):
                if step < len(choice):
                    delta, logprobs = choice[step]
                    chunk.append(
                        f'{prefix}{{"index":{index},"delta":{delta},'
                        f'"logprobs":{logprobs},"finish_reason":null}}]{usage_tail}\n\n'
                    )
            events.append("".join(chunk).encode())
            if weights is not None:
                weights.append(len(chunk))
        tail = [
            f'{prefix}{{"index":{index},"delta":{{}},"logprobs":null,'
            f'"finish_reason":"{finish_reason(choice)}"}}]{usage_tail}\n\n'
            for index, choice in enumerate(plan.choices)
        ]
        if parsed.include_usage:
            tail.append(f'{prefix}],"usage":{dumps(usage_json(plan))}}}\n\n')
        tail.append("data: [DONE]\n\n")

        await pause(settings.ttft_s + tier_delay)
        resp = web.StreamResponse(headers={**SSE_HEADERS, "x-request-id": rid})
        await resp.prepare(request)
        progress = StreamProgress(weights=weights)
        stream_fault = None
        if fault is not None:
            stream_fault = StreamFault(fault.kind, fault.after_tokens, fault.stall_s)
        try:
            await write_stream(
                resp,
                request,
                progress,
                head=head,
                events=events,
                tail="".join(tail).encode(),
                error_event=STREAM_ERROR,
                tokens_per_s=settings.tokens_per_s,
                fault=stream_fault,
            )
        finally:
            mode = mode_for(parsed.service_tier, "stream")
            bill_chat(self.state, plan, mode, progress.tokens_sent)
        return resp

    def _models(self) -> list[str]:
        """Chat and embedding models alike, as OpenAI lists them."""
        config = self.state.config
        return [*config.models["openai"], *config.embedding_models]

    async def list_models(self, request: web.Request, rid: str) -> web.Response:
        data = [_model_json(m) for m in self._models()]
        return json_response({"object": "list", "data": data}, rid)

    async def get_model(self, request: web.Request, rid: str) -> web.Response:
        model = request.match_info["model"]
        if model not in self._models():
            raise OpenAIError(
                404,
                f"The model '{model}' does not exist",
                param="model",
                code="model_not_found",
            )
        return json_response(_model_json(model), rid)


def _model_json(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": "system"}
