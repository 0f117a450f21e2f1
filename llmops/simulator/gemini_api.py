"""Gemini: the native REST API under `{sim}/gemini` (what the google-genai SDK calls with
`http_options.base_url`) and the OpenAI-compatible one under `{sim}/gemini/v1beta/openai`.

Native routes (versions v1 and v1beta alike: google-genai 3.6.1 calls v1 by default):
  POST {v}/models/{model}:generateContent          GenerateContentRequest -> Response
  POST {v}/models/{model}:streamGenerateContent    ?alt=sse: a Response chunk per event
  POST {v}/models/{model}:countTokens
  POST {v}/models/{model}:embedContent | :batchEmbedContents   (gemini-embedding-001)
  POST {v}/models/{model}:batchGenerateContent     batch mode (gemini_batches)
  GET  {v}/models, {v}/models/{model}
  files and their uploads and downloads: gemini_files; batches: gemini_batches
Auth: the `x-goog-api-key` header or `?key=` (any non-empty value); without one, 403
PERMISSION_DENIED as Google answers an unidentified caller. Errors in Google's shape,
{"error": {"code", "message", "status"}}.

OpenAI-compatible routes: POST chat/completions, POST embeddings, GET models: OpenAI's handlers
with Gemini's catalogue (gemini-2.5-flash, -flash-lite, -pro: at most 65,536 output tokens;
gemini-embedding-001: 3072 dimensions, `dimensions` honoured), Bearer auth, errors in Google's
shape, and no `service_tier` (refused with 400).

Faults name provider `gemini`; generateContent is the `chat` endpoint, as the compatible
chat/completions is. The usage book's `gemini` provider has realtime, stream and batch rows.
"""

from __future__ import annotations

import itertools
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from llmops.simulator.gemini_generate import (
    FAULT_MESSAGES,
    GeneratePlan,
    GoogleError,
    bill_generate,
    candidate_json,
    invalid,
    not_found_model,
    parse_generate,
    pick,
    plan_generate,
    response_json,
    status_name,
    usage_json,
)
from llmops.simulator.openai_api import PROMPT_OVERHEAD_TOKENS, Dialect, OpenAIError
from llmops.simulator.openai_embeddings import vector_bytes
from llmops.simulator.state import Fault, SimState
from llmops.simulator.textgen import count_tokens, pieces
from llmops.simulator.wire import (
    api_key,
    dump_bytes,
    dumps,
    pause,
    serve_stream,
)

log = logging.getLogger(__name__)

VERSION = "{version:v1|v1beta|v1alpha}"
NATIVE = f"/gemini/{VERSION}"
COMPAT_BASE = "/gemini/v1beta/openai"
UNIDENTIFIED = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)
MAX_EMBED_TOKENS = 2048
Action = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def google_json(body: object, status: int = 200, headers: dict[str, str] | None = None):
    return web.Response(
        body=dump_bytes(body), status=status, content_type="application/json", headers=headers
    )


def error_response(exc: GoogleError) -> web.Response:
    return google_json(exc.body(), exc.code, exc.headers)


def native_key(request: web.Request) -> str | None:
    key = (request.headers.get("x-goog-api-key") or request.query.get("key") or "").strip()
    return key or None


def fault_error(fault: Fault) -> GoogleError:
    status = fault.status or 500
    default = FAULT_MESSAGES.get(status) or FAULT_MESSAGES[500 if status >= 500 else 400]
    return GoogleError(status, fault.message or default, headers=fault.headers())


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.")
    return body


def google_endpoint(
    state: SimState,
    name: str | None,
    fn: Callable[[web.Request], Awaitable[web.StreamResponse]],
    *,
    auth: bool = True,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Auth, injected errors (for `name`; None: the handler matches its own) and Google's
    error shape around a native route."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if auth and native_key(request) is None:
            return error_response(GoogleError(403, UNIDENTIFIED))
        try:
            if name is not None and state.faults.faults:
                fault = state.fault("gemini", name, None, ("error", "stall"))
                if fault is not None:
                    if fault.kind == "error":
                        raise fault_error(fault)
                    await pause(fault.stall_s)
            return await fn(request)
        except GoogleError as exc:
            return error_response(exc)
        except Exception:
            log.exception("simulator: unhandled error in Gemini %s", request.path)
            return error_response(GoogleError(500, FAULT_MESSAGES[500]))

    return handler


# --- the OpenAI-compatible API ---------------------------------------------------------------


def _compat_auth(state: SimState, request: web.Request) -> OpenAIError | None:
    if api_key(request) is None:
        return OpenAIError(401, "Missing or invalid Authorization header.")
    return None


def _compat_model(state: SimState, name: str) -> str:
    model = name.removeprefix("models/")
    config = state.config
    if model in config.models["gemini"] or model in config.embedding_catalogues["gemini"]:
        return model
    raise OpenAIError(404, not_found_model(model).message, param="model")


def _google_render(exc: OpenAIError) -> dict[str, Any]:
    return {
        "error": {"code": exc.status, "message": exc.message, "status": status_name(exc.status)}
    }


def _refuse_tier(tier: str) -> OpenAIError:
    return OpenAIError(
        400,
        'Invalid JSON payload received. Unknown name "service_tier": Cannot find field.',
        param="service_tier",
    )


GEMINI_OPENAI = Dialect(
    provider="gemini",
    base=COMPAT_BASE,
    catalogue="gemini",
    authorize=_compat_auth,
    resolve=_compat_model,
    tiers=(),
    refuse_tier=_refuse_tier,
    render=_google_render,
    model_prefix="models/",
    owned_by="google",
)


# --- the native API --------------------------------------------------------------------------


def _model_json(name: str, output_limit: int | None) -> dict[str, Any]:
    shown = name.replace("-", " ").title()
    if output_limit is None:  # an embedding model
        return {
            "name": f"models/{name}",
            "version": "001",
            "displayName": shown,
            "inputTokenLimit": MAX_EMBED_TOKENS,
            "outputTokenLimit": 1,
            "supportedGenerationMethods": ["embedContent", "countTokens", "asyncBatchEmbedContent"],
        }
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": shown,
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": output_limit,
        "supportedGenerationMethods": [
            "generateContent",
            "countTokens",
            "createCachedContent",
            "batchGenerateContent",
        ],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": True,
    }


class GeminiAPI:
    """The native model routes. `actions` adds model methods served elsewhere
    (batchGenerateContent: gemini_batches)."""

    def __init__(self, state: SimState, actions: dict[str, Action] | None = None) -> None:
        self.state = state
        self.actions: dict[str, Action] = {
            "generateContent": self.generate,
            "streamGenerateContent": self.generate,
            "countTokens": self.count_tokens,
            "embedContent": self.embed,
            "batchEmbedContents": self.embed,
            **(actions or {}),
        }

    def routes(self) -> list[web.RouteDef]:
        state = self.state
        return [
            web.post(f"{NATIVE}/models/{{target}}", google_endpoint(state, None, self.action)),
            web.get(f"{NATIVE}/models", google_endpoint(state, "models", self.list_models)),
            web.get(f"{NATIVE}/models/{{model}}", google_endpoint(state, "models", self.get_model)),
        ]

    async def action(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].rpartition(":")
        handler = self.actions.get(method)
        if not model or handler is None:
            raise GoogleError(404, f"Method not found: {method or request.match_info['target']}.")
        return await handler(request, model)

    def _catalogue(self) -> dict[str, int | None]:
        config = self.state.config
        return {
            **config.models["gemini"],
            **dict.fromkeys(config.embedding_catalogues["gemini"]),
        }

    async def list_models(self, request: web.Request) -> web.Response:
        models = [_model_json(name, limit) for name, limit in self._catalogue().items()]
        return google_json({"models": models})

    async def get_model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        catalogue = self._catalogue()
        if name not in catalogue:
            raise GoogleError(404, f"Model is not found: models/{name} for api version v1beta")
        return google_json(_model_json(name, catalogue[name]))

    async def generate(self, request: web.Request, model: str) -> web.StreamResponse:
        state = self.state
        stream = request.match_info["target"].endswith(":streamGenerateContent")
        body = await read_body(request)
        fault = state.inference_fault("gemini", "chat", {"model": model, "stream": stream})
        if fault is not None and fault.kind == "error":
            raise fault_error(fault)
        models = state.config.models["gemini"]
        if model not in models:
            raise not_found_model(model)
        plan = plan_generate(state, parse_generate(body, model, models[model], stream=stream))
        response_id = state.ids.make("")
        settings = state.config.for_model(model)
        if stream:
            return await self._stream(request, plan, response_id, fault)
        longest = max(choice.output_tokens for choice in plan.chat.choices) + plan.thoughts
        delay = settings.ttft_s + (longest / settings.tokens_per_s if settings.tokens_per_s else 0)
        if fault is not None:
            delay += fault.stall_s
        await pause(delay)
        bill_generate(state, plan, "realtime")
        return google_json(response_json(plan, response_id))

    async def _stream(
        self, request: web.Request, plan: GeneratePlan, response_id: str, fault: Fault | None
    ) -> web.StreamResponse:
        """SSE (`alt=sse`, as the SDK asks): a Response chunk per word of each candidate (a
        function call comes whole), then one with the finish reasons and the usage."""
        state = self.state
        settings = state.config.for_model(plan.model)
        # Per candidate: its events' pieces, each with the output tokens it carries (spread
        # evenly, so a finished stream bills what its usage says).
        per_candidate: list[list[tuple[dict[str, Any], int]]] = []
        for index, choice in enumerate(plan.chat.choices):
            whole = candidate_json(plan, index)
            if choice.tool_calls:
                parts = [whole]
            else:
                text = whole["content"]["parts"][0]["text"]
                parts = [candidate_json(plan, index, piece) for piece in pieces(text)]
            for part in parts:
                del part["finishReason"]
            shares = _spread(len(parts), choice.output_tokens)
            per_candidate.append(list(zip(parts, shares, strict=True)))
        head = {"modelVersion": plan.model, "responseId": response_id}
        events: list[bytes] = []
        weights: list[int] = []
        for step in range(max((len(c) for c in per_candidate), default=0)):
            chunk, weight = [], 0
            for candidate in per_candidate:
                if step < len(candidate):
                    chunk.append(candidate[step][0])
                    weight += candidate[step][1]
            weights.append(weight)
            events.append(_sse({"candidates": chunk, **head}))
        finals = [
            {
                "content": {"parts": [{"text": ""}], "role": "model"},
                "finishReason": candidate_json(plan, i)["finishReason"],
                "index": i,
            }
            for i in range(len(plan.chat.choices))
        ]
        tail = _sse({"candidates": finals, "usageMetadata": usage_json(plan), **head})
        error = _sse(GoogleError(500, FAULT_MESSAGES[500]).body())
        await pause(settings.ttft_s)
        resp, _ = await serve_stream(
            request,
            headers={},
            weights=weights,
            fault=fault,
            head=b"",
            events=events,
            tail=tail,
            error_event=error,
            tokens_per_s=settings.tokens_per_s,
            bill=lambda tokens: bill_generate(state, plan, "stream", tokens),
        )
        return resp

    async def count_tokens(self, request: web.Request, model: str) -> web.Response:
        body = await read_body(request)
        models = self.state.config.models["gemini"]
        if model not in models:
            raise not_found_model(model, "countTokens")
        inner = pick(body, "generateContentRequest")
        if inner is None:
            inner = {key: value for key, value in body.items() if key != "model"}
        call = parse_generate(inner, model, models[model])
        total = count_tokens(call.chat.prompt) + call.chat.image_tokens + PROMPT_OVERHEAD_TOKENS
        return google_json(
            {
                "totalTokens": total,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}],
            }
        )

    async def embed(self, request: web.Request, model: str) -> web.Response:
        """embedContent ({content}) and batchEmbedContents ({requests: [...]}), the latter what
        the SDK's models.embed_content calls."""
        state = self.state
        body = await read_body(request)
        fault = state.inference_fault("gemini", "embeddings", {"model": model})
        if fault is not None and fault.kind == "error":
            raise fault_error(fault)
        catalogue = state.config.embedding_catalogues["gemini"]
        if model not in catalogue:
            raise not_found_model(model, "embedContent")
        many = request.match_info["target"].endswith(":batchEmbedContents")
        requests = body.get("requests") if many else [body]
        if not isinstance(requests, list) or not requests:
            raise invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
        vectors, spent = [], 0
        for index, item in enumerate(requests):
            where = f"requests[{index}]" if many else "content"
            content = pick(item, "content") if isinstance(item, dict) else None
            parts = content.get("parts") if isinstance(content, dict) else None
            if not parts:
                raise invalid(f"* EmbedContentRequest.{where}: content is not specified")
            text = "\n".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
            tokens = count_tokens(text)
            if tokens > MAX_EMBED_TOKENS:
                raise invalid(
                    f"* EmbedContentRequest.{where}: the text has {tokens} tokens; at most "
                    f"{MAX_EMBED_TOKENS} are allowed."
                )
            native = catalogue[model].dimensions
            size = pick(item, "outputDimensionality") or native
            if not isinstance(size, int) or not 1 <= size <= native:
                raise invalid(
                    f"* EmbedContentRequest.{where}.output_dimensionality: must be between 1 "
                    f"and {native}."
                )
            packed = vector_bytes(model, text, size)
            vectors.append({"values": list(struct.unpack(f"<{size}f", packed))})
            spent += tokens
        if fault is not None:
            await pause(fault.stall_s)
        await pause(state.config.for_model(model).ttft_s)
        state.usage.add("gemini", model, "realtime", input_tokens=spent, output_tokens=0)
        return google_json({"embeddings": vectors} if many else {"embedding": vectors[0]})


def _spread(events: int, tokens: int) -> list[int]:
    shares = [0, *(tokens * (index + 1) // events for index in range(events))]
    return [after - before for before, after in itertools.pairwise(shares)]


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {dumps(payload)}\r\n\r\n".encode()
