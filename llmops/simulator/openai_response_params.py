"""What a `POST /v1/responses` body may say (contract §10), checked the way openai_api checks a
chat body: each refusal is a 400 naming the field. The endpoint itself is openai_responses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops.simulator.openai_api import (
    IMAGE_TOKENS,
    IMAGE_TOKENS_DEFAULT,
    SERVICE_TIERS,
    TOOL_NAME,
    OpenAIError,
    bad_tool_name,
    bounded_int,
    bounded_number,
    checked_stream_options,
    invalid_type,
    missing,
    model_not_found,
    no_such_function,
    required_model,
    tier_used,
)
from llmops.simulator.wire import dumps

ROLES = ("user", "assistant", "system", "developer")
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")
TEXT_PARTS = ("input_text", "output_text")
IMAGE_DETAILS = ("auto", "low", "high", "original")
TRUNCATIONS = ("auto", "disabled")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
SUMMARIES = ("auto", "concise", "detailed")
VERBOSITIES = ("low", "medium", "high")
MIN_OUTPUT_TOKENS = 16


def _supported(param: str, value: object, supported: tuple[str, ...]) -> OpenAIError:
    listed = repr(supported[-1])
    if len(supported) > 1:
        listed = ", ".join(repr(s) for s in supported[:-1]) + f" and {listed}"
    return OpenAIError(
        400,
        f"Invalid value: {value!r}. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def _choice(body: dict[str, Any], key: str, supported: tuple[str, ...], where: str = "") -> Any:
    value = body.get(key)
    if value is not None and value not in supported:
        raise _supported(f"{where}{key}", value, supported)
    return value


def _optional(body: dict[str, Any], key: str, kind: type, expected: str) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise invalid_type(key, expected, value)
    return value


def _given(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def check_metadata(metadata: Any) -> dict[str, str] | None:
    """OpenAI's metadata object (batches and responses alike): at most 16 string pairs, keys up
    to 64 characters, values up to 512."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise invalid_type("metadata", "an object", metadata)
    if len(metadata) > 16:
        raise OpenAIError(
            400,
            f"Invalid 'metadata': too many properties. Expected an object with at most 16 "
            f"properties, but got an object with {len(metadata)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise OpenAIError(
                400,
                f"Invalid 'metadata': key {key[:20]!r}... is longer than 64 characters.",
                param="metadata",
                code="invalid_value",
            )
        if not isinstance(value, str):
            raise invalid_type(f"metadata.{key}", "a string", value)
        if len(value) > 512:
            raise OpenAIError(
                400,
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length 512, but got a string with length {len(value)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return dict(metadata)


@dataclass(slots=True)
class Turn:
    """Input items read into prompt lines, as chat writes its messages (`role: text`)."""

    lines: list[str]
    image_tokens: int
    calls: list[str]  # call_ids of the function_call items, in order
    outputs: list[str]  # call_ids the function_call_output items answer
    last_role: str  # who spoke last: "tool" after a function's output


def call_line(call_id: str, name: str, arguments: str) -> str:
    return "assistant: " + dumps({"call_id": call_id, "name": name, "arguments": arguments})


def _content(content: Any, where: str) -> tuple[str, int]:
    """A message's content as prompt text, and what its images cost."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise invalid_type(where, "one of a string or array of objects", content)
    texts: list[str] = []
    image_tokens = 0
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        if not isinstance(part, dict):
            raise invalid_type(at, "an object", part)
        kind = part.get("type")
        if kind in TEXT_PARTS:
            text = part.get("text")
            if not isinstance(text, str):
                raise missing(f"{at}.text")
            texts.append(text)
        elif kind == "refusal":
            texts.append(str(part.get("refusal", "")))
        elif kind == "input_image":
            if not isinstance(part.get("image_url") or part.get("file_id"), str):
                raise missing(f"{at}.image_url")
            detail = part.get("detail") or "auto"
            if detail not in IMAGE_DETAILS:
                raise _supported(f"{at}.detail", detail, IMAGE_DETAILS)
            texts.append(f"<image:{detail}>")
            image_tokens += IMAGE_TOKENS.get(detail, IMAGE_TOKENS_DEFAULT)
        elif kind == "input_file":
            texts.append("<input_file>")
        elif kind is None:
            raise missing(f"{at}.type")
        else:
            raise _supported(
                f"{at}.type", kind, (*TEXT_PARTS, "refusal", "input_image", "input_file")
            )
    return "\n".join(texts), image_tokens


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if value is None:
        raise missing(f"{where}.{key}")
    if not isinstance(value, str):
        raise invalid_type(f"{where}.{key}", "a string", value)
    return value


def read_input(value: Any) -> Turn:
    """The `input` of a request: a string is one user message; a list holds items."""
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        return Turn([f"user: {value}"], 0, [], [], "user")
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of input items", value)
    if not value:
        raise OpenAIError(
            400,
            "Invalid 'input': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="input",
            code="empty_array",
        )
    turn = Turn([], 0, [], [], "user")
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise invalid_type(where, "an object", item)
        # An easy message ({role, content}) may leave its type out.
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role is None:
                raise missing(f"{where}.role")
            if role not in ROLES:
                raise _supported(f"{where}.role", role, ROLES)
            if "content" not in item:
                raise missing(f"{where}.content")
            text, image_tokens = _content(item["content"], f"{where}.content")
            turn.lines.append(f"{role}: {text}")
            turn.image_tokens += image_tokens
            turn.last_role = role
        elif kind == "function_call":
            call_id = _string(item, "call_id", where)
            name = _string(item, "name", where)
            turn.lines.append(call_line(call_id, name, _string(item, "arguments", where)))
            turn.calls.append(call_id)
            turn.last_role = "assistant"
        elif kind == "function_call_output":
            call_id = _string(item, "call_id", where)
            output = item.get("output")
            if output is None:
                raise missing(f"{where}.output")
            text, image_tokens = _content(output, f"{where}.output")
            turn.lines.append(f"tool: {text}")
            turn.image_tokens += image_tokens
            turn.outputs.append(call_id)
            turn.last_role = "tool"
        elif kind == "reasoning":
            # A reasoning item only hands back the model's own state: nothing to read or count.
            continue
        elif kind is None:
            raise missing(f"{where}.type")
        else:
            raise _supported(f"{where}.type", kind, ITEM_TYPES)
    return turn


@dataclass(slots=True)
class Tools:
    echo: list[dict[str, Any]]  # flat function tools, as the Response repeats them
    functions: list[dict[str, Any]]  # the same in chat's shape, for structured.chosen_tools
    choice: Any  # tool_choice in chat's shape


def read_tools(body: dict[str, Any]) -> Tools:
    tools = body.get("tools")
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise invalid_type("tools", "an array", tools)
    echo, functions = [], []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise invalid_type(where, "an object", tool)
        kind = tool.get("type")
        if kind is None:
            raise missing(f"{where}.type")
        if kind != "function":
            # The real API has hosted tools too (web_search, file_search, ...): none simulated.
            raise OpenAIError(
                400,
                f"Invalid value: {kind!r}. This simulator supports only 'function' tools.",
                param=f"{where}.type",
                code="invalid_value",
            )
        name = _string(tool, "name", where)
        if not TOOL_NAME.fullmatch(name):
            raise bad_tool_name(f"{where}.name")
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid_type(f"{where}.parameters", "an object", parameters)
        description = tool.get("description")
        strict = tool.get("strict")
        echo.append(
            {
                "type": "function",
                "name": name,
                "description": description,
                "parameters": parameters,
                # Function tools are strict unless told otherwise, on this API.
                "strict": True if strict is None else strict,
            }
        )
        function = {"name": name, "description": description, "parameters": parameters}
        functions.append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if choice is None:
        choice = "auto"
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise _supported("tool_choice.type", choice.get("type"), ("function",))
        name = choice.get("name")
        if name not in {tool["name"] for tool in echo}:
            raise no_such_function(name)
        return Tools(echo, functions, {"type": "function", "function": {"name": name}})
    if not isinstance(choice, str):
        raise invalid_type("tool_choice", "a string or an object", choice)
    if choice not in ("none", "auto", "required"):
        raise _supported("tool_choice", choice, ("none", "auto", "required"))
    if choice == "required" and not echo:
        raise OpenAIError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
            code="invalid_value",
        )
    return Tools(echo, functions, choice)


def read_text(body: dict[str, Any], context: str) -> tuple[dict[str, Any], dict | None]:
    """`text` as the Response repeats it, and the schema its format asks the answer to follow
    ({} for any JSON object; None for plain text). `context` is the instructions and input."""
    text = body.get("text")
    if text is None:
        text = {}
    if not isinstance(text, dict):
        raise invalid_type("text", "an object", text)
    verbosity = _choice(text, "verbosity", VERBOSITIES, "text.")
    fmt = text.get("format")
    if fmt is None:
        fmt = {"type": "text"}
    if not isinstance(fmt, dict):
        raise invalid_type("text.format", "an object", fmt)
    echo = {"format": fmt, "verbosity": verbosity or "medium"}
    kind = fmt.get("type")
    if kind == "text":
        return echo, None
    if kind == "json_object":
        if "json" not in context.lower():
            raise OpenAIError(
                400,
                "Response input messages must contain the word 'json' in some form to use "
                "'text.format' of type 'json_object'.",
                param="text.format",
            )
        return echo, {}
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str):
            raise missing("text.format.name")
        schema = fmt.get("schema")
        if schema is None:
            raise missing("text.format.schema")
        if not isinstance(schema, dict):
            raise invalid_type("text.format.schema", "an object", schema)
        return echo, schema or {"type": "object", "properties": {}}
    raise _supported("text.format.type", kind, ("text", "json_object", "json_schema"))


@dataclass(slots=True)
class ResponseCall:
    """A checked create request: what to plan, and the fields its Response repeats."""

    model: str
    instructions: str | None
    turn: Turn
    tools: Tools
    schema: dict | None
    max_output_tokens: int | None
    stream: bool
    store: bool
    previous_response_id: str | None
    echo: dict[str, Any]


def parse_response(
    body: dict[str, Any], models: dict[str, int], *, in_batch: bool = False
) -> ResponseCall:
    """A checked create request, or an OpenAIError naming the field. Unknown fields are
    ignored, as chat ignores them (SDK `extra_body` may add any)."""
    model = required_model(body)
    turn = read_input(body.get("input"))
    if model not in models:
        raise model_not_found(model)
    instructions = _optional(body, "instructions", str, "a string")
    max_output_tokens = bounded_int(body, "max_output_tokens", MIN_OUTPUT_TOKENS, None)
    if max_output_tokens is not None and max_output_tokens > models[model]:
        raise OpenAIError(
            400,
            f"max_output_tokens is too large: {max_output_tokens}. This model supports at most "
            f"{models[model]} output tokens, whereas you provided {max_output_tokens}.",
            param="max_output_tokens",
            code="invalid_value",
        )
    bounded_number(body, "temperature", 0, 2)
    bounded_number(body, "top_p", 0, 1)
    top_logprobs = bounded_int(body, "top_logprobs", 0, 20)
    tools = read_tools(body)
    parallel = _optional(body, "parallel_tool_calls", bool, "a boolean")
    text, schema = read_text(body, "\n".join([instructions or "", *turn.lines]))
    stream = _optional(body, "stream", bool, "a boolean")
    if in_batch and stream:
        raise OpenAIError(
            400, "'stream' is not supported in the Batch API.", param="stream", code="invalid_value"
        )
    checked_stream_options(body, stream)
    store = _optional(body, "store", bool, "a boolean")
    previous = _optional(body, "previous_response_id", str, "a string")
    reasoning = body.get("reasoning")
    if reasoning is None:
        reasoning = {}
    if not isinstance(reasoning, dict):
        raise invalid_type("reasoning", "an object", reasoning)
    tier = _choice(body, "service_tier", SERVICE_TIERS)
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_output_tokens,
        "max_tool_calls": None,
        "parallel_tool_calls": parallel is not False,
        "previous_response_id": previous,
        "prompt_cache_key": _optional(body, "prompt_cache_key", str, "a string"),
        "reasoning": {
            "effort": _choice(reasoning, "effort", EFFORTS, "reasoning."),
            "summary": _choice(reasoning, "summary", SUMMARIES, "reasoning."),
        },
        "safety_identifier": _optional(body, "safety_identifier", str, "a string"),
        # The tier actually used: the project default for auto, priority for its alias fast.
        "service_tier": tier_used(tier),
        "store": store is not False,
        "temperature": _given(body, "temperature", 1.0),
        "text": text,
        "tool_choice": _given(body, "tool_choice", "auto"),
        "tools": tools.echo,
        "top_logprobs": top_logprobs or 0,
        "top_p": _given(body, "top_p", 1.0),
        "truncation": _choice(body, "truncation", TRUNCATIONS) or "disabled",
        "metadata": check_metadata(body.get("metadata")) or {},
        "user": _optional(body, "user", str, "a string"),
    }
    return ResponseCall(
        model=model,
        instructions=instructions,
        turn=turn,
        tools=tools,
        schema=schema,
        max_output_tokens=max_output_tokens,
        stream=bool(stream),
        store=store is not False,
        previous_response_id=previous,
        echo=echo,
    )
