"""OpenAI Chat Completions ↔ Gemini's native generateContent (REST, camelCase): what of an
OpenAI body a Gemini model can honour, the body as a GenerateContentRequest (a batch-mode line's
`request`), and a GenerateContentResponse (a result line's `response`) back as the OpenAI
answer llmops stores (openai_chat's shape) and its usage.

What cannot be honoured is refused by name (translation.Untranslatable), never dropped; the
one rule serves both Gemini lanes (its OpenAI-compatible API in realtime, its native batch
mode), so a chain falls back, or a request is refused, the same way whichever lane serves it.
gemini_refuses is generate_request's own verdict, so the two cannot disagree.

Decisions, each argued where it is made:
- reasoning_effort becomes a thinkingBudget, with the budgets of Gemini's own OpenAI-compatible
  endpoint (REASONING_BUDGET);
- an https image URL becomes fileData (Gemini fetches it), when its name shows an image type;
- consecutive turns of one role are merged (Gemini's function-calling turn rules need it);
- tools go as parametersJsonSchema (a client's JSON Schema as is), strict ones under the
  VALIDATED calling mode;
- tool-call ids go round trip in functionCall/functionResponse `id`, thought signatures in
  `extra_content.google.thought_signature` as the OpenAI-compatible API carries them."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

from billing.pricing import Usage
from routing.protocols import openai_chat
from routing.protocols.translation import Untranslatable

# Options a Gemini model honours, with the values it honours them at (None: any value, the
# value itself checked by _OPTION_CHECKS where it has limits). The tags that only mark or
# route the call on OpenAI's side (user, safety_identifier, metadata, store, prompt_cache_key)
# do not change the answer; stream and stream_options matter only to the realtime lane.
_ANY = None
GEMINI_HONOURS: dict[str, tuple | None] = {
    "max_tokens": _ANY,
    "max_completion_tokens": _ANY,
    "temperature": _ANY,
    "top_p": _ANY,
    "n": _ANY,
    "stop": _ANY,
    "seed": _ANY,
    "presence_penalty": _ANY,
    "frequency_penalty": _ANY,
    "response_format": _ANY,
    "tools": _ANY,
    "tool_choice": _ANY,
    "parallel_tool_calls": _ANY,
    "reasoning_effort": ("none", "minimal", "low", "medium", "high"),
    "modalities": (["text"],),
    "stream": _ANY,
    "stream_options": _ANY,
    "user": _ANY,
    "safety_identifier": _ANY,
    "metadata": _ANY,
    "store": _ANY,
    "prompt_cache_key": _ANY,
    # Gemini has logprobs of its own, but not in OpenAI's shape: asking for them is refused.
    "logprobs": (False,),
    "top_logprobs": (0,),
    "service_tier": ("auto", "default"),
}
# Gemini's documented limits where they are narrower than OpenAI's (n up to 128, stop 4).
MAX_CANDIDATES = 8
MAX_STOP_SEQUENCES = 5
MAX_TEMPERATURE = 2
# reasoning_effort as a thinking budget in tokens, as Gemini's OpenAI-compatible endpoint maps
# it (none disables thinking; minimal and low share the smallest budget). A budget rather than
# a thinkingLevel: 2.5 models refuse thinkingLevel, while Gemini 3 still takes a budget, and the
# request does not know which family serves it. xhigh and max have no portable budget above
# high's and are refused. (Pro models cannot stop thinking: Gemini itself refuses none there.)
REASONING_BUDGET = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
# Gemini's function names start with a letter or underscore (OpenAI's may start with a digit
# or a dash); the rest of OpenAI's [A-Za-z0-9_-]{1,64} fits Gemini's alphabet.
GEMINI_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
# The image types Gemini reads, by the extension an https URL shows.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3", "flac": "audio/flac", "aac": "audio/aac"}
# Gemini 3 answers 400 when the first functionCall of a model turn comes back without a thought
# signature. A call another model made (a chain's fallback) or that a client replays without
# the signature has none: Gemini documents this value for exactly that case.
FOREIGN_SIGNATURE = "skip_thought_signature_validator"


def gemini_refuses(*, options: dict, messages: list[dict]) -> str | None:
    """The first parameter of an OpenAI chat request (options: the body but model and
    messages) a Gemini model cannot honour, as a path ("logprobs", "messages.2.content.0",
    "tools.1.type"), or None."""
    try:
        generate_request(messages=messages, options=options)
    except Untranslatable as exc:
        return exc.param
    return None


# --- OpenAI request → GenerateContentRequest -----------------------------------------------


def generate_request(*, messages: list[dict], options: dict, max_tokens: int | None = None) -> dict:
    """An OpenAI chat request as Gemini's GenerateContentRequest (camelCase, a batch line's
    `request`). `max_tokens` is the limit when the body sets none. Raises Untranslatable,
    naming the first parameter a Gemini model cannot honour (options first, then messages)."""
    _check_options(options)
    system, contents = _contents(messages)
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": system}
    if config := _generation_config(options, max_tokens):
        request["generationConfig"] = config
    if tools := options.get("tools"):
        request["tools"] = [{"functionDeclarations": [_declaration(t) for t in tools]}]
        if calling := _function_calling(options.get("tool_choice"), tools):
            request["toolConfig"] = {"functionCallingConfig": calling}
    return request


def _check_options(options: dict) -> None:
    for key, value in options.items():
        if value is None:
            continue
        if key not in GEMINI_HONOURS:
            raise Untranslatable(key, f"a Gemini model cannot honour {key}")
        allowed = GEMINI_HONOURS[key]
        if allowed is not _ANY and value not in allowed:
            raise Untranslatable(key, f"a Gemini model cannot honour {key}={value!r}")
        if check := _OPTION_CHECKS.get(key):
            check(key, value, options)


def _number(value, low: float, high: float) -> bool:
    # bool is an int subclass: `true` is a client bug, not 1.
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _check_range(low: float, high: float):
    def check(key: str, value, options: dict) -> None:
        if not _number(value, low, high):
            raise Untranslatable(key, f"a Gemini model takes {key} from {low} to {high}")

    return check


def _check_whole(low: int, high: int):
    def check(key: str, value, options: dict) -> None:
        if not (_number(value, low, high) and isinstance(value, int)):
            raise Untranslatable(
                key, f"a Gemini model takes {key} as a whole number {low} to {high}"
            )

    return check


def _check_stop(key: str, stop, options: dict) -> None:
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise Untranslatable(key, "stop is a string or a list of strings")
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise Untranslatable(key, f"a Gemini model takes at most {MAX_STOP_SEQUENCES} stops")


def _check_response_format(key: str, fmt, options: dict) -> None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise Untranslatable(key, f"a Gemini model cannot answer in {kind!r}")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema") or {}, dict):
            raise Untranslatable(f"{key}.json_schema", "json_schema needs a schema object")


def _check_tools(key: str, tools, options: dict) -> None:
    if not isinstance(tools, list):
        raise Untranslatable(key, "tools is a list")
    for index, tool in enumerate(tools):
        where = f"tools.{index}"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            # custom (free-text) tools have no Gemini counterpart
            raise Untranslatable(f"{where}.type", "a Gemini model calls function tools only")
        function = tool.get("function")
        if not isinstance(function, dict):
            raise Untranslatable(f"{where}.function", "a function tool needs its function")
        name = function.get("name")
        if not isinstance(name, str) or not GEMINI_FUNCTION_NAME.fullmatch(name):
            # A renamed function would come back in the answer under a name the client lacks.
            raise Untranslatable(
                f"{where}.function.name", "a Gemini function name starts with a letter or _"
            )
        if not isinstance(function.get("parameters") or {}, dict):
            raise Untranslatable(f"{where}.function.parameters", "parameters is a JSON Schema")


def _check_tool_choice(key: str, choice, options: dict) -> None:
    tools = options.get("tools")
    functions = [t.get("function") for t in tools if isinstance(t, dict)] if tools else []
    names = {f.get("name") for f in functions if isinstance(f, dict)}
    if choice in ("auto", "none"):
        return
    if not names:
        raise Untranslatable(key, "tool_choice asks for a tool call but the request has no tools")
    if choice == "required":
        return
    if _allowed_names(choice) is None or not set(_allowed_names(choice)) <= names:
        raise Untranslatable(key, f"a Gemini model cannot honour tool_choice {choice!r}")


def _check_parallel_tool_calls(key: str, value, options: dict) -> None:
    # Gemini has no switch against parallel calls: false would be a promise it cannot keep
    # (without tools it promises nothing).
    if not isinstance(value, bool) or (value is False and options.get("tools")):
        raise Untranslatable(key, "a Gemini model may always call functions in parallel")


_OPTION_CHECKS = {
    "max_tokens": _check_whole(1, 10**9),
    "max_completion_tokens": _check_whole(1, 10**9),
    "temperature": _check_range(0, MAX_TEMPERATURE),
    "top_p": _check_range(0, 1),
    "n": _check_whole(1, MAX_CANDIDATES),
    "seed": _check_whole(-(2**63), 2**63 - 1),
    "presence_penalty": _check_range(-2, 2),
    "frequency_penalty": _check_range(-2, 2),
    "stop": _check_stop,
    "response_format": _check_response_format,
    "tools": _check_tools,
    "tool_choice": _check_tool_choice,
    "parallel_tool_calls": _check_parallel_tool_calls,
}


def _allowed_names(choice) -> list[str] | None:
    """The functions a named or allowed_tools tool_choice lets the model call (None if it is
    neither, or names something other than functions)."""
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        return [name] if isinstance(name, str) else None
    allowed = choice.get("allowed_tools") if choice.get("type") == "allowed_tools" else None
    if not isinstance(allowed, dict) or allowed.get("mode") not in ("auto", "required"):
        return None
    names = []
    for tool in allowed.get("tools") or ():
        if not isinstance(tool, dict) or tool.get("type") != "function":
            return None
        names.append((tool.get("function") or {}).get("name"))
    return names if names and all(isinstance(n, str) for n in names) else None


def _generation_config(options: dict, max_tokens: int | None) -> dict:
    config: dict[str, Any] = {}
    # Gemini counts thinking tokens in maxOutputTokens, as OpenAI counts reasoning tokens in
    # max_completion_tokens: the limit carries over unchanged.
    for limit in (options.get("max_completion_tokens"), options.get("max_tokens"), max_tokens):
        if limit is not None:
            config["maxOutputTokens"] = limit
            break
    if options.get("temperature") is not None:
        config["temperature"] = options["temperature"]
    if options.get("top_p") is not None:
        config["topP"] = options["top_p"]
    stop = options.get("stop") or []
    if sequences := [s for s in ([stop] if isinstance(stop, str) else stop) if s]:
        config["stopSequences"] = sequences  # an empty stop string stops nothing
    if (options.get("n") or 1) > 1:
        config["candidateCount"] = options["n"]
    if options.get("seed") is not None:
        config["seed"] = options["seed"]
    # A zero penalty is the default: left out, as some Gemini models refuse the fields at all.
    if options.get("presence_penalty"):
        config["presencePenalty"] = options["presence_penalty"]
    if options.get("frequency_penalty"):
        config["frequencyPenalty"] = options["frequency_penalty"]
    fmt = options.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if fmt.get("type") == "json_schema":
        # responseJsonSchema takes JSON Schema as is (responseSchema is an OpenAPI subset that
        # refuses additionalProperties, which every strict OpenAI schema has). Gemini always
        # decodes to the schema, so OpenAI's strict flag is honoured either way.
        config["responseJsonSchema"] = fmt["json_schema"].get("schema") or {"type": "object"}
    if (effort := options.get("reasoning_effort")) is not None:
        config["thinkingConfig"] = {"thinkingBudget": REASONING_BUDGET[effort]}
    return config


def _declaration(tool: dict) -> dict:
    function = tool["function"]
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    # parametersJsonSchema takes the client's JSON Schema as is; `parameters` is an OpenAPI
    # subset that would refuse additionalProperties, $ref, const and the like. A function
    # without parameters takes no arguments in both.
    if function.get("parameters"):
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _function_calling(choice, tools: list[dict]) -> dict | None:
    """tool_choice as functionCallingConfig (None for Gemini's default, AUTO).

    A strict tool promises arguments that match its schema: AUTO does not, VALIDATED does
    (and ANY always does), so strict tools are called under VALIDATED."""
    strict = any(tool["function"].get("strict") for tool in tools)
    if choice in (None, "auto"):
        return {"mode": "VALIDATED"} if strict else None
    if choice == "none":
        return {"mode": "NONE"}
    if choice == "required":
        return {"mode": "ANY"}
    names = _allowed_names(choice) or []
    # allowed_tools in auto mode: Gemini takes a list of names under ANY or VALIDATED only.
    optional = choice.get("type") == "allowed_tools" and choice["allowed_tools"]["mode"] == "auto"
    return {"mode": "VALIDATED" if optional else "ANY", "allowedFunctionNames": names}


def _contents(messages) -> tuple[list[dict], list[dict]]:
    """The messages as (systemInstruction parts, contents).

    Consecutive turns of one role are merged: Gemini wants every result of a model turn's
    parallel calls in the one turn after it, and a function-call turn right after a user or
    function-response turn; merging the rest too is harmless (parts are read in order)."""
    if not isinstance(messages, list):
        raise Untranslatable("messages", "messages is a list")
    system: list[dict] = []
    contents: list[dict] = []
    names: dict[str, str] = {}  # tool call id → function name, from the assistant turns
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise Untranslatable(where, "a message is an object")
        role = message.get("role")
        if role in ("system", "developer"):
            # Gemini has one system instruction; system turns mid-conversation join it, as
            # they join Claude's top-level system.
            system += _text_parts(message.get("content"), where)
            continue
        if role == "user":
            turn, parts = "user", _user_parts(message.get("content"), where)
        elif role == "assistant":
            turn, parts = "model", _model_parts(message, where, names)
        elif role == "tool":
            turn, parts = "user", [_function_response(message, where, names)]
        else:  # "function" (the deprecated functions API) among them
            raise Untranslatable(f"{where}.role", f"a Gemini model cannot read {role!r} turns")
        if not parts:
            continue  # Gemini refuses a turn without parts; an empty message says nothing
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": turn, "parts": parts})
    for content in contents:
        calls = [p for p in content["parts"] if "functionCall" in p]
        if content["role"] == "model" and calls and "thoughtSignature" not in calls[0]:
            calls[0]["thoughtSignature"] = FOREIGN_SIGNATURE
    return system, contents


def _text_parts(content, where: str) -> list[dict]:
    """Text-only content (a system or assistant turn's) as text parts; empty text is dropped
    (Gemini refuses an empty text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise Untranslatable(f"{where}.content", "content is a string or a list of parts")
    parts = []
    for position, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise Untranslatable(f"{where}.content.{position}", "this turn holds text only")
        if not isinstance(part.get("text"), str):
            raise Untranslatable(f"{where}.content.{position}", "a text part needs its text")
        if part["text"]:
            parts.append({"text": part["text"]})
    return parts


def _user_parts(content, where: str) -> list[dict]:
    if not isinstance(content, list):
        return _text_parts(content, where)
    parts = []
    for position, part in enumerate(content):
        at = f"{where}.content.{position}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise Untranslatable(at, "a text part needs its text")
            if part["text"]:  # Gemini refuses an empty text part
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            # `detail` is a hint on OpenAI's side; as for Claude, the image goes as sent.
            parts.append(_image(url, at))
        elif kind == "input_audio":
            parts.append(_audio(part.get("input_audio"), at))
        elif kind == "file":
            file = part.get("file")
            data = file.get("file_data") if isinstance(file, dict) else None
            # An OpenAI file id means nothing to Gemini; inline file data does.
            if not (isinstance(data, str) and data.startswith("data:")):
                raise Untranslatable(at, "a Gemini model reads a file sent as a data: URL only")
            parts.append(_inline(data, at))
        else:
            raise Untranslatable(at, f"a Gemini model cannot read {kind!r} parts")
    return parts


def _image(url, at: str) -> dict:
    if isinstance(url, str) and url.startswith("data:"):
        return _inline(url, at)
    # Gemini fetches public and signed https URLs itself (fileData). Its mimeType is required
    # and only the URL's name can show it here (no fetching in a pure translation): a URL
    # whose name shows no image type is refused rather than sent under a guess. Plain http
    # is not among the documented sources.
    if isinstance(url, str) and url.startswith("https://"):
        path = urlsplit(url).path.lower()
        for extension, mime_type in IMAGE_TYPES.items():
            if path.endswith(extension):
                return {"fileData": {"mimeType": mime_type, "fileUri": url}}
    raise Untranslatable(at, "a Gemini model reads a data: URL or an https image URL ending .png…")


def _inline(url: str, at: str) -> dict:
    header, comma, data = url.partition(",")
    mime_type, *params = header.removeprefix("data:").split(";")
    if not (comma and mime_type and "base64" in params and data):
        raise Untranslatable(at, "a data: URL here is base64 with its media type")
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def _audio(audio, at: str) -> dict:
    fmt = audio.get("format") if isinstance(audio, dict) else None
    if fmt not in AUDIO_TYPES or not isinstance(audio.get("data"), str):
        raise Untranslatable(at, f"a Gemini model cannot read {fmt!r} audio")
    return {"inlineData": {"mimeType": AUDIO_TYPES[fmt], "data": audio["data"]}}


def _model_parts(message: dict, where: str, names: dict[str, str]) -> list[dict]:
    for key in ("function_call", "audio"):
        # The deprecated functions API, and a reference to an earlier spoken answer by id.
        if message.get(key) is not None:
            raise Untranslatable(f"{where}.{key}", f"a Gemini model cannot read {key}")
    parts = _text_parts(message.get("content"), where)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise Untranslatable(f"{where}.tool_calls", "tool_calls is a list")
    for position, call in enumerate(calls):
        at = f"{where}.tool_calls.{position}"
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise Untranslatable(at, "a Gemini model reads function calls only")
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        try:
            args = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            args = None
        # Gemini's args are an object: arguments that are not one cannot be replayed as sent.
        if not isinstance(args, dict):
            raise Untranslatable(f"{at}.function.arguments", "arguments are a JSON object")
        if not isinstance(name, str) or not name:
            raise Untranslatable(f"{at}.function.name", "a function call needs its name")
        part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
        if isinstance(call.get("id"), str) and call["id"]:
            part["functionCall"]["id"] = call["id"]
            names[call["id"]] = name
        signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if isinstance(signature, str) and signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: dict, where: str, names: dict[str, str]) -> dict:
    call_id = message.get("tool_call_id")
    # Gemini names a function's response by the function, which OpenAI's tool turn leaves to
    # the call it answers: a result for no earlier call cannot be named.
    if not isinstance(call_id, str) or call_id not in names:
        raise Untranslatable(f"{where}.tool_call_id", "a tool result answers no earlier call")
    output = "".join(p["text"] for p in _text_parts(message.get("content"), where))
    # Gemini reads "output" (or "error") as the function's result; the text goes as sent.
    return {
        "functionResponse": {"id": call_id, "name": names[call_id], "response": {"output": output}}
    }


# --- GenerateContentResponse → OpenAI answer -----------------------------------------------

FINISH_REASON = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}


def chat_answer(response: dict, *, model: str) -> tuple[dict, Usage]:
    """A GenerateContentResponse as the OpenAI answer llmops stores (openai_chat's shape: one
    choice per candidate) and its usage. Raises ValueError for what is not a response with
    usage (the caller records an "invalid" result)."""
    if not isinstance(response, dict):
        raise ValueError("a GenerateContentResponse is a JSON object")
    usage = _usage(response.get("usageMetadata"))
    candidates = response.get("candidates") or []
    if not isinstance(candidates, list):
        raise ValueError("candidates is not a list")
    model = model or str(response.get("modelVersion") or "")
    # proto3 JSON leaves out zero values: the first candidate's index 0 is often missing. Where
    # no candidate has one, their order is theirs.
    indexed = any(isinstance(c, dict) and "index" in c for c in candidates)
    choices = [
        _choice(c, 0 if indexed else position, response, model)
        for position, c in enumerate(candidates)
    ]
    if not choices:
        # No candidate at all: the prompt itself was blocked (promptFeedback.blockReason).
        feedback = response.get("promptFeedback")
        blocked = isinstance(feedback, dict) and feedback.get("blockReason")
        finish = "content_filter" if blocked else "stop"
        choices = openai_chat.text_answer("", finish_reason=finish, model=model)["choices"]
    choices.sort(key=lambda choice: choice["index"])
    return {"model": model, "choices": choices}, usage


def _choice(candidate, default_index: int, response: dict, model: str) -> dict:
    if not isinstance(candidate, dict):
        raise ValueError("a candidate is not an object")
    index = candidate.get("index", default_index)
    content = candidate.get("content") or {}
    parts = (content.get("parts") or []) if isinstance(content, dict) else None
    if not isinstance(index, int) or not isinstance(parts, list):
        raise ValueError("a candidate's index or content is malformed")
    text, calls = [], []
    for part in parts:
        if not isinstance(part, dict):
            raise ValueError("a part is not an object")
        if isinstance(part.get("text"), str) and not part.get("thought"):  # thoughts are not
            text.append(part["text"])  # the answer (and come only when asked for)
        elif isinstance(part.get("functionCall"), dict):
            calls.append(_tool_call(part, response, index, len(calls)))
    finish = FINISH_REASON.get(candidate.get("finishReason") or "STOP", "stop")
    if calls and finish == "stop":
        finish = "tool_calls"
    answer = openai_chat.text_answer(
        "".join(text), finish_reason=finish, model=model, tool_calls=calls
    )
    return {**answer["choices"][0], "index": index}


def _tool_call(part: dict, response: dict, candidate: int, position: int) -> dict:
    call = part["functionCall"]
    args = call.get("args") or {}
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        # 2.5 models give calls no id, and the client needs one to answer the call with. It
        # is derived, not random, so a result ingested twice reads the same.
        seed = json.dumps([response.get("responseId"), candidate, position, call], sort_keys=True)
        call_id = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
    tool_call: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {"name": call.get("name") or "", "arguments": json.dumps(args)},
    }
    if part.get("thoughtSignature"):
        # Where Gemini's OpenAI-compatible API puts it: a client that replays the call as it
        # got it gives Gemini 3 back the signature it requires, through either lane.
        tool_call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return tool_call


def _usage(metadata) -> Usage:
    """usageMetadata as the ledger's usage. promptTokenCount includes the cached tokens;
    thinking is billed as output, so it joins candidatesTokenCount there (and is the
    reasoning share); the tool-use prompt (server-side tools) is billed as input."""
    if not isinstance(metadata, dict):
        raise ValueError("the response has no usageMetadata")

    def count(key: str) -> int:
        value = metadata.get(key, 0)  # proto3 JSON leaves out zero counts
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"usageMetadata.{key} is not a whole number: {value!r}")
        return value

    cached = count("cachedContentTokenCount")
    thoughts = count("thoughtsTokenCount")
    return Usage(
        input_tokens=count("promptTokenCount") + count("toolUsePromptTokenCount") - cached,
        cached_input_tokens=cached,
        output_tokens=count("candidatesTokenCount") + thoughts,
        reasoning_tokens=thoughts,
    )


# --- errors --------------------------------------------------------------------------------

# google.rpc.Code names: a batch result line's error is a google.rpc.Status, whose code is the
# gRPC one (3, not 400) and which carries no status name of its own.
RPC_STATUS = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


def error_text(error: dict) -> str:
    """A result line's or an API error's {code, message, status} as one readable line:
    "400 INVALID_ARGUMENT: …" (an API error body's {"error": {…}} envelope is unwrapped)."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if not isinstance(error, dict):
        return " ".join(str(error or "").split()) or "unknown error"
    code, status = error.get("code"), error.get("status")
    if not status and isinstance(code, int):
        status = RPC_STATUS.get(code)
    head = " ".join(str(x) for x in (code, status) if x not in (None, ""))
    message = " ".join(str(error.get("message") or "").split())
    if head and message:
        return f"{head}: {message}"
    return head or message or "unknown error"
