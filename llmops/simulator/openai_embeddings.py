"""OpenAI embeddings: `POST /v1/embeddings`, realtime here and as batch lines (openai_batches);
through a Dialect also Azure OpenAI's and Gemini's OpenAI-compatible ones.

A vector is a deterministic function of (model, input): the same text always embeds to the
same unit vector and different texts to different ones. There is no meaning in them (similar
texts are not close), only the shape, the length and the bytes the SDK expects.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from llmops.simulator.openai_api import (
    OPENAI,
    Dialect,
    OpenAIError,
    bounded_int,
    endpoint,
    fault_error,
    invalid_type,
    json_response,
    missing,
    model_not_found,
    read_json,
    required_model,
    type_name,
)
from llmops.simulator.state import EmbeddingModel, SimState
from llmops.simulator.textgen import count_tokens
from llmops.simulator.wire import is_int, pause

MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000
ENCODINGS = ("float", "base64")

# One input: a text, or token ids. With no real BPE to decode them, token ids embed apart from
# the text they spell: a vector is only the same for the same input in the same form.
Input = str | tuple[int, ...]

_INPUT_TYPES = "a string, an array of strings, an array of integers or an array of integer arrays"
# OpenAI's words for an empty string (its param is null; here it names the field, like the
# simulator's other input errors). Given for an empty array or token list too.
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)


@dataclass(frozen=True, slots=True)
class EmbeddingCall:
    """A checked embeddings request; it is its own plan, since nothing is cached or generated.

    The usage attributes mirror a ChatPlan's, so a batch bills either kind of line alike.
    """

    model: str
    inputs: tuple[Input, ...]
    prompt_tokens: int
    dimensions: int
    encoding_format: str
    cached_tokens: ClassVar[int] = 0
    completion_tokens: ClassVar[int] = 0


def _bad_input() -> OpenAIError:
    return OpenAIError(400, _INVALID_INPUT, param="input")


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_token_list(value: Any) -> bool:
    return isinstance(value, list) and all(is_int(t) for t in value)


def _input_items(value: Any) -> list[Input]:
    """The inputs of a request, one per vector: a string or a flat token list is one input."""
    if value is None:
        raise missing("input")
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise invalid_type("input", _INPUT_TYPES, value)
    if not value:
        raise _bad_input()
    # The first element says which of the array forms this is; all the others must agree.
    fits = _is_text if isinstance(value[0], str) else is_int if is_int(value[0]) else _is_token_list
    wrong = next((i for i, x in enumerate(value) if not fits(x)), None)
    if wrong is not None:
        raise OpenAIError(
            400,
            f"Invalid type for 'input[{wrong}]': expected {_INPUT_TYPES}, "
            f"but got {type_name(value[wrong])} instead.",
            param="input",
            code="invalid_type",
        )
    if fits is is_int:
        return [tuple(value)]
    if fits is _is_token_list:
        return [tuple(x) for x in value]
    return list(value)


def _tokens_of(item: Input) -> int:
    if isinstance(item, str):
        if not item:
            raise _bad_input()
        return count_tokens(item)
    if not item or min(item) < 0:
        raise _bad_input()
    return len(item)


def parse_embeddings(body: dict[str, Any], models: dict[str, EmbeddingModel]) -> EmbeddingCall:
    """A checked embeddings request, or an OpenAIError naming the field (§9 of the contract)."""
    model = required_model(body)
    if model not in models:
        raise model_not_found(model)
    native = models[model]
    items = _input_items(body.get("input"))
    if len(items) > MAX_INPUTS:
        raise OpenAIError(
            400,
            f"Invalid 'input': array too long. Expected an array with maximum length "
            f"{MAX_INPUTS}, but got an array with length {len(items)} instead.",
            param="input",
            code="array_above_max_length",
        )
    total = 0
    for item in items:
        tokens = _tokens_of(item)
        if tokens > MAX_INPUT_TOKENS:
            # The contract's wording and envelope (§9): no param, no code.
            raise OpenAIError(
                400, f"Invalid 'input': maximum context length is {MAX_INPUT_TOKENS} tokens."
            )
        total += tokens
    if total > MAX_REQUEST_TOKENS:
        raise OpenAIError(
            400,
            f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
            type="max_tokens_per_request",
            code="max_tokens_per_request",
        )

    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    elif encoding not in ENCODINGS:
        raise OpenAIError(
            400,
            f"Invalid value for 'encoding_format': {encoding!r}. "
            "Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    if body.get("dimensions") is not None and not native.shortens:
        raise OpenAIError(
            400, "This model does not support specifying dimensions.", param="dimensions"
        )
    dimensions = bounded_int(body, "dimensions", 1, native.dimensions) or native.dimensions
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid_type("user", "a string", user)
    return EmbeddingCall(model, tuple(items), total, dimensions, encoding)


def vector_bytes(model: str, item: Input, dimensions: int) -> bytes:
    """An input's unit vector as little-endian float32 bytes, the wire's base64 payload.

    The components come from SHAKE-256 of (model, input). Its output is extendable: the first
    n components are the same whatever length is asked for, so a shortened vector is the
    native one cut and renormalised, as text-embedding-3 shortens.
    """
    if isinstance(item, str):
        key = f"{model}\x00text\x00{item}"
    else:
        key = f"{model}\x00tokens\x00{','.join(map(str, item))}"
    digest = hashlib.shake_256(key.encode()).digest(2 * dimensions)
    # The half keeps every component off zero, so even one dimension has a length to divide by.
    raw = [x + 0.5 for x in struct.unpack(f"<{dimensions}h", digest)]
    norm = math.hypot(*raw)
    return struct.pack(f"<{dimensions}f", *(x / norm for x in raw))


def embeddings_json(call: EmbeddingCall) -> dict[str, Any]:
    data = []
    for index, item in enumerate(call.inputs):
        packed = vector_bytes(call.model, item, call.dimensions)
        if call.encoding_format == "base64":
            embedding: str | list[float] = base64.b64encode(packed).decode("ascii")
        else:
            # The float32 values themselves, so both encodings decode to the same numbers.
            embedding = list(struct.unpack(f"<{call.dimensions}f", packed))
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": call.prompt_tokens, "total_tokens": call.prompt_tokens},
    }


def bill_embeddings(
    state: SimState, call: EmbeddingCall, mode: str, provider: str = "openai"
) -> None:
    state.usage.add(provider, call.model, mode, input_tokens=call.prompt_tokens, output_tokens=0)


class OpenAIEmbeddings:
    def __init__(self, state: SimState, dialect: Dialect = OPENAI) -> None:
        self.state = state
        self.dialect = dialect

    def routes(self) -> list[web.RouteDef]:
        handler = endpoint(self.state, "embeddings", self.create, self.dialect)
        return [web.post(f"{self.dialect.base}/embeddings", handler)]

    async def create(self, request: web.Request, rid: str) -> web.Response:
        state, dialect = self.state, self.dialect
        body = read_json(await request.read())
        asked = dialect.model_of(state, body)
        fault = state.inference_fault(dialect.provider, "embeddings", body, also=asked)
        if fault is not None and fault.kind == "error":
            raise fault_error(fault)
        model = body.get("model")
        if isinstance(model, str) and model in dialect.chat_models(state):
            raise OpenAIError(
                400, f"The model `{model}` does not support embeddings.", param="model"
            )
        call = parse_embeddings(body, dialect.embedding_models(state))
        # Nothing streams: the whole answer comes after the model's time to first token.
        delay = state.config.for_model(call.model).ttft_s
        if fault is not None:
            delay += fault.stall_s
        await pause(delay)
        bill_embeddings(state, call, "realtime", dialect.provider)
        return json_response(embeddings_json(call), rid)
