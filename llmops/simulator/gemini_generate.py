"""Gemini's native GenerateContentRequest in, GenerateContentResponse out, and Google's errors.

Shared by `:generateContent` / `:streamGenerateContent` (gemini_api) and by batch mode's lines
(gemini_batches). A request is read into the same ChatCall the OpenAI dialect plans
(openai_chat.plan_chat): the same canonical prompt lines ("system: …", "user: …",
"assistant: …", "tool: …"), tokenizer, prompt cache and text, JSON or tool-call answers, so a
question asked natively or on Gemini's OpenAI-compatible endpoint gets the same answer and bill.

Field names are taken in the REST API's lowerCamelCase and in proto snake_case alike (the
google-genai SDK sends some nested objects in the latter); unknown fields at the top of the
request or in generationConfig are refused, as the real API's JSON parser refuses them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from llmops.simulator.openai_api import ChatCall
from llmops.simulator.openai_chat import ChatPlan, plan_chat
from llmops.simulator.state import SimState
from llmops.simulator.structured import chosen_tools
from llmops.simulator.wire import dumps, is_int, is_number

GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# Default messages of injected errors, by status (the real API's wording for each).
FAULT_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
ROLES = ("user", "model", "function", "tool")
# A prompt line per content, as the OpenAI dialect writes its messages.
ROLE_LINES = {"user": "user", "model": "assistant", "function": "tool", "tool": "tool"}
IMAGE_TOKENS = 258  # what Gemini counts per image
MIME_TYPES = (
    "text/plain",
    "application/json",
    "text/x.enum",
    "application/xml",
    "application/yaml",
)
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
MODES = ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED")
REQUEST_FIELDS = (
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "labels",
    "model",
    "store",
    "serviceTier",
)
CONFIG_FIELDS = (
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "_responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
    "audioTimestamp",
    "routingConfig",
    "modelSelectionConfig",
)


def status_name(code: int) -> str:
    return GOOGLE_STATUS.get(code) or ("INTERNAL" if code >= 500 else "FAILED_PRECONDITION")


class GoogleError(Exception):
    """An error in Google's shape: {"error": {"code", "message", "status"}}."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or status_name(code)
        self.headers = headers or {}

    def status_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "status": self.status}

    def body(self) -> dict[str, Any]:
        return {"error": self.status_json()}


def invalid(message: str) -> GoogleError:
    return GoogleError(400, message)


def not_found_model(model: str, method: str = "generateContent") -> GoogleError:
    return GoogleError(
        404,
        f"models/{model} is not found for API version v1beta, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their supported "
        "methods.",
    )


def snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), name)


def pick(obj: dict[str, Any], name: str) -> Any:
    """A field by its REST (lowerCamel) or proto (snake_case) name."""
    if name in obj:
        return obj[name]
    return obj.get(snake(name))


def check_known(obj: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    allowed = {*fields, *(snake(f) for f in fields)}
    for key in obj:
        if key not in allowed:
            at = f" at '{where}'" if where else ""
            raise invalid(
                f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            )


def _bad_value(field: str, kind: str, value: Any) -> GoogleError:
    return invalid(f"Invalid value at '{field}' ({kind}), {dumps(value)}")


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad_value(field, "TYPE_MESSAGE", value)
    return value


def _number(config: dict[str, Any], name: str, low: float, high: float | None) -> float | None:
    value = pick(config, name)
    field = f"generation_config.{snake(name)}"
    if value is None:
        return None
    if not is_number(value):
        raise _bad_value(field, "TYPE_FLOAT", value)
    if value < low or (high is not None and value > high):
        bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
        raise invalid(
            f"* GenerateContentRequest.{field}: {snake(name)} must be {bound} (inclusive); "
            f"got {value}."
        )
    return value


def _integer(config: dict[str, Any], name: str) -> int | None:
    value = pick(config, name)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        value = int(value)  # proto JSON takes integers as strings too
    if not is_int(value):
        raise _bad_value(f"generation_config.{snake(name)}", "TYPE_INT32", value)
    return value


def openapi_schema(schema: Any) -> dict[str, Any]:
    """Gemini's OpenAPI-subset Schema (types in capitals) as the JSON schema it describes."""
    if not isinstance(schema, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: openapi_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = openapi_schema(value)
        elif key in ("anyOf", "any_of") and isinstance(value, list):
            out["anyOf"] = [openapi_schema(sub) for sub in value]
        elif key not in ("nullable", "propertyOrdering", "property_ordering"):
            out[key] = value
    return out


@dataclass(slots=True)
class GenerateCall:
    """A checked GenerateContentRequest, as the chat call it is planned as."""

    chat: ChatCall
    enum: bool = False  # text/x.enum: the answer is the bare value, not JSON
    thinking_budget: int | None = None


@dataclass(slots=True)
class GeneratePlan:
    call: GenerateCall
    chat: ChatPlan
    thoughts: int  # thinking tokens, billed as output

    @property
    def model(self) -> str:
        return self.chat.model

    # The usage attributes of a ChatPlan, with thinking counted as output.
    @property
    def prompt_tokens(self) -> int:
        return self.chat.prompt_tokens

    @property
    def cached_tokens(self) -> int:
        return self.chat.cached_tokens

    @property
    def completion_tokens(self) -> int:
        return self.chat.completion_tokens + self.thoughts


def _part_text(part: Any, where: str) -> tuple[str, int]:
    """A part as prompt text, with the image tokens it adds."""
    if not isinstance(part, dict):
        raise _bad_value(where, "TYPE_MESSAGE", part)
    text = part.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise _bad_value(f"{where}.text", "TYPE_STRING", text)
        if not text and not part.get("thought"):
            raise invalid(
                "Unable to submit request because it has an empty text parameter. Add a value "
                "to the parameter and try again."
            )
        return text, 0
    call = pick(part, "functionCall")
    if call is not None:
        call = _object(call, f"{where}.function_call")
        if not isinstance(call.get("name"), str) or not call["name"]:
            raise invalid(f"* GenerateContentRequest.{where}.function_call.name: name is required")
        return f"function_call {call['name']} {dumps(call.get('args') or {})}", 0
    answer = pick(part, "functionResponse")
    if answer is not None:
        answer = _object(answer, f"{where}.function_response")
        if not isinstance(answer.get("name"), str) or not answer["name"]:
            raise invalid(
                f"* GenerateContentRequest.{where}.function_response.name: name is required"
            )
        return f"function_response {answer['name']} {dumps(answer.get('response') or {})}", 0
    for name in ("inlineData", "fileData"):
        data = pick(part, name)
        if data is not None:
            mime = str(_object(data, f"{where}.{snake(name)}").get("mimeType") or "")
            mime = mime or str(data.get("mime_type") or "application/octet-stream")
            if mime.startswith("image/"):
                return "<image:gemini>", IMAGE_TOKENS
            return f"<{mime}>", 0
    for name in ("executableCode", "codeExecutionResult", "thoughtSignature"):
        if pick(part, name) is not None:
            return f"<{snake(name)}>", 0
    raise invalid(
        f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one "
        "initialized field"
    )


def _content_text(content: Any, where: str) -> tuple[str, int, bool]:
    """A Content's parts as one prompt text, its image tokens, and whether it answers a call."""
    content = _object(content, where)
    parts = content.get("parts")
    if not parts:
        raise invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
    if not isinstance(parts, list):
        raise _bad_value(f"{where}.parts", "TYPE_MESSAGE", parts)
    texts, images, answers = [], 0, False
    for index, part in enumerate(parts):
        text, more = _part_text(part, f"{where}.parts[{index}]")
        texts.append(text)
        images += more
        answers = answers or (isinstance(part, dict) and pick(part, "functionResponse") is not None)
    return "\n".join(texts), images, answers


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Function declarations as OpenAI tools (for the shared tool-call planner), and the
    declarations as the prompt shows them."""
    tools = pick(body, "tools")
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        raise _bad_value("tools", "TYPE_MESSAGE", tools)
    functions, shown = [], []
    for i, tool in enumerate(tools):
        tool = _object(tool, f"tools[{i}]")
        declarations = pick(tool, "functionDeclarations") or []
        if not isinstance(declarations, list):
            raise _bad_value(f"tools[{i}].function_declarations", "TYPE_MESSAGE", declarations)
        for j, declaration in enumerate(declarations):
            where = f"tools[{i}].function_declarations[{j}]"
            declaration = _object(declaration, where)
            name = declaration.get("name")
            if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
                raise invalid(
                    f"* GenerateContentRequest.{where}.name: Invalid function name. Must start "
                    "with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), "
                    "underscores (_), dots (.), colons (:), or dashes (-), with a maximum "
                    "length of 64."
                )
            schema = pick(declaration, "parametersJsonSchema")
            if schema is None:
                schema = openapi_schema(pick(declaration, "parameters"))
            functions.append({"type": "function", "function": {"name": name, "parameters": schema}})
            shown.append(declaration)
        if not declarations:
            shown.append(tool)  # googleSearch, codeExecution, …: shown, never called here
    return functions, shown


def _called(body: dict[str, Any], functions: list[dict], last_role: str, prompt: str) -> list:
    """The functions this answer calls, as toolConfig.functionCallingConfig allows."""
    config = pick(pick(body, "toolConfig") or {}, "functionCallingConfig") or {}
    config = _object(config, "tool_config.function_calling_config")
    mode = str(config.get("mode") or "AUTO").upper()
    if mode not in MODES:
        raise _bad_value("tool_config.function_calling_config.mode", "TYPE_ENUM", mode)
    allowed = pick(config, "allowedFunctionNames")
    if allowed is not None:
        if mode not in ("ANY", "VALIDATED"):
            raise invalid(
                "* GenerateContentRequest.tool_config.function_calling_config."
                "allowed_function_names: only allowed when mode is ANY or VALIDATED."
            )
        declared = {f["function"]["name"] for f in functions}
        for name in allowed:
            if name not in declared:
                raise invalid(
                    "* GenerateContentRequest.tool_config.function_calling_config."
                    f"allowed_function_names: function {name!r} is not declared in tools."
                )
        functions = [f for f in functions if f["function"]["name"] in allowed]
    if mode == "NONE":
        return []
    choice = "required" if mode == "ANY" else "auto"
    return chosen_tools(functions, choice, last_role=last_role, prompt=prompt, parallel=True)


def _schema(config: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The JSON schema the answer follows ({} for any JSON object); whether it is text/x.enum."""
    mime = pick(config, "responseMimeType")
    if mime is not None and mime not in MIME_TYPES:
        raise invalid(
            "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes "
            "are `text/plain`, `application/json`, `application/xml`, `application/yaml` and "
            "`text/x.enum`."
        )
    json_schema = pick(config, "responseJsonSchema")
    if json_schema is None:
        json_schema = config.get("_responseJsonSchema")
    openapi = pick(config, "responseSchema")
    if json_schema is not None and openapi is not None:
        raise invalid(
            "* GenerateContentRequest.generation_config: response_schema and "
            "response_json_schema cannot both be set."
        )
    schema = openapi_schema(openapi) if openapi is not None else json_schema
    if schema is not None:
        if not isinstance(schema, dict):
            raise _bad_value("generation_config.response_schema", "TYPE_MESSAGE", schema)
        if mime not in ("application/json", "text/x.enum"):
            raise invalid(
                "* GenerateContentRequest.generation_config.response_mime_type: "
                "response_mime_type must be application/json or text/x.enum when a "
                "response schema is set."
            )
        return schema, mime == "text/x.enum"
    return ({} if mime == "application/json" else None), False


def _generation_config(body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    config = pick(body, "generationConfig")
    if config is None:
        return {}
    config = _object(config, "generation_config")
    check_known(config, CONFIG_FIELDS, "generation_config")
    limit = _integer(config, "maxOutputTokens")
    if limit is not None and not 1 <= limit <= max_tokens:
        raise invalid(
            f"Unable to submit request because it has a maxOutputTokens value of {limit} but "
            f"the supported range is from 1 (inclusive) to {max_tokens + 1} (exclusive). "
            "Update the value and try again."
        )
    _number(config, "temperature", 0, 2)
    _number(config, "topP", 0, 1)
    _number(config, "topK", 1, None)
    _number(config, "presencePenalty", -2, 2)
    _number(config, "frequencyPenalty", -2, 2)
    count = _integer(config, "candidateCount")
    if count is not None and not 1 <= count <= 8:
        raise invalid(
            "* GenerateContentRequest.generation_config.candidate_count: must be between 1 "
            f"and 8 (inclusive); got {count}."
        )
    stop = pick(config, "stopSequences")
    if stop is not None and not (
        isinstance(stop, list) and len(stop) <= 5 and all(isinstance(s, str) for s in stop)
    ):
        raise invalid(
            "* GenerateContentRequest.generation_config.stop_sequences: at most 5 strings are "
            "allowed."
        )
    thinking = pick(config, "thinkingConfig") or {}
    budget = pick(_object(thinking, "generation_config.thinking_config"), "thinkingBudget")
    if budget is not None and not is_int(budget):
        raise _bad_value("generation_config.thinking_config.thinking_budget", "TYPE_INT32", budget)
    return {
        "max_tokens": limit,
        "n": count or 1,
        "stop": [s for s in stop or () if s] or None,
        "seed": _integer(config, "seed"),
        "thinking_budget": budget,
        "schema": _schema(config),
    }


def parse_generate(body: Any, model: str, max_tokens: int, *, stream: bool = False) -> GenerateCall:
    """A checked GenerateContentRequest for `model`, or a GoogleError naming the field."""
    body = _object(body, "")
    check_known(body, REQUEST_FIELDS, "")
    if pick(body, "serviceTier") is not None:
        # Gemini's tiers (flex and priority) are not simulated: refused, as on the compatible API.
        raise invalid(
            'Invalid JSON payload received. Unknown name "serviceTier": Cannot find field.'
        )
    contents = pick(body, "contents")
    if not contents:
        raise invalid("* GenerateContentRequest.contents: contents is not specified")
    if not isinstance(contents, list):
        raise _bad_value("contents", "TYPE_MESSAGE", contents)
    functions, shown = _tools(body)
    lines: list[str] = []
    if shown:
        lines.append("tools: " + dumps(shown))
    system = pick(body, "systemInstruction")
    images = 0
    if system is not None:
        text, more, _ = _content_text(system, "system_instruction")
        lines.append(f"system: {text}")
        images += more
    last_role = "user"
    for index, content in enumerate(contents):
        where = f"contents[{index}]"
        role = _object(content, where).get("role") or "user"
        if role not in ROLES:
            raise invalid("Please use a valid role: user, model.")
        text, more, answers = _content_text(content, where)
        images += more
        lines.append(f"{ROLE_LINES[role]}: {text}")
        # A function's answer ends the turn as a tool message does: auto calls nothing then.
        last_role = "tool" if answers else ROLE_LINES[role]
    config = _generation_config(body, max_tokens)
    schema, enum = config.get("schema", (None, False))
    prompt = "\n".join(lines)
    called = _called(body, functions, last_role, lines[-1])
    chat = ChatCall(
        model=model,
        prompt=prompt,
        max_tokens=config.get("max_tokens"),
        n=config.get("n", 1),
        stop=config.get("stop"),
        stream=stream,
        include_usage=False,
        tools=called or None,
        schema=schema,
        seed=config.get("seed"),
        image_tokens=images,
    )
    return GenerateCall(chat, enum=enum, thinking_budget=config.get("thinking_budget"))


def plan_generate(state: SimState, call: GenerateCall) -> GeneratePlan:
    """Usage and answers; feeds the prompt cache (Gemini caches implicitly, as OpenAI does)."""
    chat = plan_chat(state, call.chat)
    budget = call.thinking_budget
    thoughts = 0
    if budget is not None and budget > 0:
        thoughts = min(budget, 16 + chat.choices[0].seed % 113)
    return GeneratePlan(call, chat, thoughts)


def candidate_json(plan: GeneratePlan, index: int, text: str | None = None) -> dict[str, Any]:
    choice = plan.chat.choices[index]
    if choice.tool_calls:
        parts = [
            {
                "functionCall": {
                    "name": call["function"]["name"],
                    "args": json.loads(call["function"]["arguments"]),
                }
            }
            for call in choice.tool_calls
        ]
    else:
        if text is None:
            text = choice.text
            if plan.call.enum and text.startswith('"'):
                text = json.loads(text)
        parts = [{"text": text}]
    finish = "MAX_TOKENS" if choice.finish == "length" else "STOP"
    return {"content": {"parts": parts, "role": "model"}, "finishReason": finish, "index": index}


def usage_json(plan: GeneratePlan, candidates_tokens: int | None = None) -> dict[str, Any]:
    prompt = plan.prompt_tokens
    answer = plan.chat.completion_tokens if candidates_tokens is None else candidates_tokens
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": answer,
        "totalTokenCount": prompt + answer + plan.thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if plan.cached_tokens:
        usage["cachedContentTokenCount"] = plan.cached_tokens
    if plan.thoughts:
        usage["thoughtsTokenCount"] = plan.thoughts
    return usage


def response_json(plan: GeneratePlan, response_id: str) -> dict[str, Any]:
    return {
        "candidates": [candidate_json(plan, i) for i in range(len(plan.chat.choices))],
        "usageMetadata": usage_json(plan),
        "modelVersion": plan.model,
        "responseId": response_id,
    }


def bill_generate(
    state: SimState, plan: GeneratePlan, mode: str, candidates_tokens: int | None = None
) -> None:
    answer = plan.chat.completion_tokens if candidates_tokens is None else candidates_tokens
    state.usage.add(
        "gemini",
        plan.model,
        mode,
        input_tokens=plan.prompt_tokens,
        cached_input_tokens=plan.cached_tokens,
        output_tokens=answer + plan.thoughts,
    )
