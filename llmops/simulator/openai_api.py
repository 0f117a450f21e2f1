"""OpenAI dialect plumbing: errors, auth, the chat request checks, and who speaks it.

Request checks and messages follow the real API closely enough that the SDK
raises the same exception classes; `param` and the message name the field.
The handlers (openai_chat, openai_embeddings, openai_responses, openai_files,
openai_batches) serve OpenAI itself and, through a `Dialect`, the OpenAI-shaped
APIs of others: an Azure OpenAI resource (azure) and Gemini's OpenAI-compatible
endpoint (gemini_api).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llmops.simulator.state import EmbeddingModel, Fault, SimState
from llmops.simulator.structured import chosen_tools
from llmops.simulator.wire import (
    JSON_TYPE,
    api_key,
    dump_bytes,
    dumps,
    is_int,
    is_number,
    pause,
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


def error_response(exc: OpenAIError, rid: str, dialect: Dialect | None = None) -> web.Response:
    body = dialect.render(exc) if dialect is not None else exc.body()
    return json_response(body, rid, exc.status, exc.headers)


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


def bearer_key(state: SimState, request: web.Request) -> OpenAIError | None:
    """OpenAI's auth: any bearer key will do, none is a 401."""
    if api_key(request) is None:
        return OpenAIError(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    return None


def own_body(exc: OpenAIError) -> dict[str, Any]:
    return exc.body()


@dataclass(frozen=True, slots=True)
class Dialect:
    """Who serves an OpenAI-shaped API, and how it differs from OpenAI: where its routes
    live, how a caller proves who it is, whose models `model` names (through what, for an
    Azure deployment), which service tiers it takes, how its errors look, and under which
    provider its faults match and its usage is booked."""

    provider: str
    base: str  # the route prefix, e.g. "/openai/v1"
    catalogue: str = "openai"  # whose chat and embedding models
    authorize: Callable[[SimState, web.Request], OpenAIError | None] = bearer_key
    # The name a request asks for -> the catalogue's; raises an OpenAIError for an unknown one.
    resolve: Callable[[SimState, str], str] | None = None
    # With `refuse_tier`, the service tiers taken (the others it refuses); without, OpenAI's.
    tiers: tuple[str, ...] = ()
    refuse_tier: Callable[[str], OpenAIError] | None = None
    render: Callable[[OpenAIError], dict[str, Any]] = own_body
    model_prefix: str = ""  # how the models list names them ("models/" for Gemini)
    owned_by: str = "system"

    def chat_models(self, state: SimState) -> dict[str, int]:
        return state.config.models[self.catalogue]

    def embedding_models(self, state: SimState) -> dict[str, EmbeddingModel]:
        return state.config.embedding_catalogues[self.catalogue]

    def model_of(self, state: SimState, body: dict[str, Any]) -> str | None:
        """Rename `body["model"]` to the catalogue's model; the name it was asked by, when
        that differs (an Azure deployment), else None."""
        model = body.get("model")
        if self.resolve is None or not isinstance(model, str):
            return None
        target = self.resolve(state, model)
        if target == model:
            return None
        body["model"] = target
        return model

    def check_tier(self, body: dict[str, Any]) -> None:
        tier = body.get("service_tier")
        if tier is None or self.refuse_tier is None:
            return
        if not self.tiers or tier not in self.tiers:
            raise self.refuse_tier(str(tier))


OPENAI = Dialect(provider="openai", base="/openai/v1")

_MODEL_FAULTED = ("chat", "embeddings", "responses")


def endpoint(
    state: SimState, name: str, fn: Handler, dialect: Dialect = OPENAI
) -> Callable[[web.Request], Awaitable[Any]]:
    """Auth, request id, injected errors and error rendering around an OpenAI-shaped route.

    Chat, embeddings and responses do their own fault matching: a fault may name the model
    they ask for.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        rid = state.ids.make("req_")
        refused = dialect.authorize(state, request)
        if refused is not None:
            return error_response(refused, rid, dialect)
        try:
            if name not in _MODEL_FAULTED and state.faults.faults:
                fault = state.fault(dialect.provider, name, None, ("error", "stall"))
                if fault is not None:
                    if fault.kind == "error":
                        raise fault_error(fault)
                    await pause(fault.stall_s)
            return await fn(request, rid)
        except OpenAIError as exc:
            return error_response(exc, rid, dialect)
        except Exception:
            log.exception("simulator: unhandled error in %s %s", dialect.provider, request.path)
            return error_response(
                OpenAIError(500, _FAULT_DEFAULTS[500][2], type="server_error"), rid, dialect
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
