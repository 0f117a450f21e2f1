"""The OpenAI-compatible API for the official openai SDK and frameworks: chat completions,
the Responses API, embeddings and models. Every object is scoped to the caller's team."""

from __future__ import annotations

from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.views import APIView

from billing.pricing import Usage
from llmops.dbthreads import db
from routing import asks, conversations, selectors, services
from routing.models import LlmModel, Request
from routing.protocols import openai_chat, openai_responses
from routing.providers import Delta, ProviderError, delete_response
from routing.serving import (
    authenticate,
    identified,
    method_not_allowed,
    openai_error,
    protocol_stream,
    serve,
    sse,
)


async def chat_completions(http_request):
    """POST /v1/chat/completions for OpenAI clients: the body relayed as sent to the model the
    client named (or its policy's chain), the answer relayed as the provider sent it."""
    return await serve(
        http_request,
        surface="chat",
        body=_chat_body,
        replay=_openai_replay_stream,
        stream=_openai_stream,
        render=_openai_body,
    )


async def embeddings(http_request):
    """POST /v1/embeddings for OpenAI clients: the body relayed as sent to the embedding model
    the client named (or its policy's chain), the answer as the provider sent it (vectors in
    the encoding asked for), billed per input token."""
    return await serve(http_request, surface="embeddings", body=_as_answered)


async def _as_answered(request: Request) -> dict:
    """The answer as the provider sent it (kept whole: a replay and a cache hit repeat it)."""
    return request.answer


async def _chat_body(request: Request) -> dict:
    return await db(_openai_body, request)


def _include_usage(request: Request) -> bool:
    """Whether the client's stream asked for the usage chunk (its options keep stream_options)."""
    options = request.params.get("options") or {}
    return bool((options.get("stream_options") or {}).get("include_usage"))


def _openai_id(request: Request) -> str:
    return f"chatcmpl-{request.pk.hex}"


def _token_usage(request: Request) -> Usage:
    return Usage(**request.usage) if request.usage else Usage(input_tokens=0)


def _openai_identity(request: Request, answer: dict) -> dict:
    """The id, created and model a rendered answer carries: those the provider gave it (an
    idempotent replay repeats the first answer), else the request's own."""
    return {
        "id": answer.get("id") or _openai_id(request),
        "created": answer.get("created") or int(request.created_at.timestamp()),
        "model": answer.get("model") or request.model.model_id,
    }


def _openai_body(request: Request) -> dict:
    """Sync: a replayed request loads its model here (a served one has it already)."""
    answer = asks.answer_of(request)
    return openai_chat.response_body(
        answer, usage=_token_usage(request), **_openai_identity(request, answer)
    )


async def _openai_stream(admitted: services.Admitted, events, first):
    """The stream as the provider sent it (a relay: each event's bytes), or rendered here
    (a translated answer's text), then [DONE] once the answer is billed."""
    request = admitted.request
    include_usage = _include_usage(request)
    ident, created = _openai_id(request), int(request.created_at.timestamp())
    role = True
    try:
        event = first
        while True:
            if isinstance(event, Delta):
                if event.raw is not None:
                    yield event.raw
                elif event.openai or event.text:
                    delta = event.openai or {"content": event.text}
                    delta = {**delta, "role": "assistant"} if role else delta
                    role = False
                    yield sse(None, _chunk(ident, created, admitted.serving.model_id, delta))
            elif not _relayed(event.model):
                answer = asks.answer_of(event)
                usage = _token_usage(event) if include_usage else None
                model = event.model.model_id
                finish = openai_chat.first_finish(answer)
                yield sse(None, _chunk(ident, created, model, {}, finish=finish))
                if usage is not None:
                    yield sse(
                        None,
                        {
                            **_chunk(ident, created, model, {}),
                            "choices": [],
                            "usage": (openai_chat.usage_json(usage)),
                        },
                    )
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                break
    except services.RequestFailed as exc:
        yield sse(
            None, {"error": {"message": str(exc), "type": "api_error", "code": "upstream_failed"}}
        )
    yield sse(None, "[DONE]")


def _relayed(model: LlmModel) -> bool:
    """Whether `model`'s chat answers come relayed from an OpenAI-protocol provider (its
    stream holds every chunk, finish and usage included), not translated here."""
    return model.provider.speaks_openai


def _chunk(ident: str, created: int, model: str, delta: dict, *, finish=None) -> dict:
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


async def _openai_replay_stream(request: Request):
    """A completed request (a cache hit, an idempotent retry) told as a stream."""
    include_usage = _include_usage(request)
    request = await db(Request.objects.select_related("model").get, pk=request.pk)
    answer = asks.answer_of(request)
    chunks = openai_chat.answer_chunks(
        answer,
        usage=_token_usage(request) if include_usage else None,
        **_openai_identity(request, answer),
    )
    for chunk in chunks:
        yield sse(None, chunk)
    yield sse(None, "[DONE]")


# --- the Responses API --------------------------------------------------------------------


async def responses(http_request):
    """POST /v1/responses for OpenAI clients: relayed as sent to an OpenAI-protocol model (its
    Response and every stream event back as the provider sent them), translated for a Claude
    model (rendered here as OpenAI renders them); billed like chat."""
    return await serve(
        http_request,
        surface="responses",
        body=_as_answered,
        replay=_responses_replay,
        stream=_responses_stream,
    )


def _responses_replay(request: Request):
    return (openai_responses.sse(e) for e in openai_responses.answer_events(request.answer))


def _responses_stream(admitted: services.Admitted, events, first):
    """The provider's events as it sent them (a relay), or rendered here from a translated
    stream's pieces. Either way the closing event (`response.completed`, the Response with its
    usage) leaves only once the answer is billed."""
    request = admitted.request
    rendered = None
    # Known once the first event came (no fallback now). Without a Responses API of its own
    # (Claude, Gemini) the provider answered in chat: the events are rendered here.
    if not admitted.serving.provider.has_responses_api:
        rendered = openai_responses.EventStream(
            id=conversations.response_id(request),
            created_at=int(request.created_at.timestamp()),
            model=admitted.serving.model_id,
            options=request.params.get("options") or {},
        )

    def failed(message: str) -> list[dict]:
        # The SDK knows a fixed list of failure codes: server_error is the one that fits.
        if rendered is not None:
            return rendered.failed(message, "server_error")
        return [{"type": "error", "code": "server_error", "message": message, "param": None}]

    return protocol_stream(
        events, first, rendered=rendered, sse=openai_responses.sse, failed=failed
    )


@csrf_exempt
async def response_detail(http_request, response_id: str):
    """GET and DELETE /v1/responses/{id}: a stored response of the caller's team, read or
    forgotten (at its provider too, when the provider keeps it)."""
    if http_request.method not in ("GET", "DELETE"):
        return method_not_allowed("GET, DELETE")
    try:
        key = await db(authenticate, http_request)
    except AuthenticationFailed as exc:
        return openai_error(401, str(exc.detail), code="invalid_api_key")
    try:
        stored = await db(conversations.stored_response, team=key.team_id, response_id=response_id)
    except conversations.NotFound:
        return openai_error(
            404,
            f"No response found with id '{response_id}'.",
            field="response_id",
            code="not_found",
        )
    if http_request.method == "GET":
        # x-request-id: the request this response answered (read with the record).
        return identified(JsonResponse(stored.request.answer), str(stored.request_id))
    if stored.provider.has_responses_api:
        try:
            await delete_response(stored.provider.endpoint(), response_id)
        except ProviderError as exc:
            return openai_error(
                exc.status or 502,
                f"The provider holding {response_id} did not delete it: {exc}",
                code="upstream_failed",
            )
    await db(conversations.response_delete, team=key.team_id, response_id=response_id)
    return identified(JsonResponse({"id": response_id, "object": "response", "deleted": True}))


# --- GET /v1/models ------------------------------------------------------------------------


@csrf_exempt
def openai_models(http_request, model_id: str | None = None):
    """GET /v1/models and /v1/models/{id}: what the key's team may name as `model` (its
    workloads' chains, every enabled model where a policy allows any, and the policies'
    aliases), in OpenAI's shape; an id it may not name is a 404 model_not_found."""
    if http_request.method != "GET":
        return method_not_allowed("GET")
    try:
        key = authenticate(http_request)
    except AuthenticationFailed as exc:
        return openai_error(401, str(exc.detail), code="invalid_api_key")
    models, aliases = selectors.models_for_team(key.team)
    entries = [
        {
            "id": m.model_id,
            "object": "model",
            "created": int(m.created_at.timestamp()),
            "owned_by": m.provider.slug,
        }
        for m in models
    ] + [{"id": a, "object": "model", "created": 0, "owned_by": "llmops"} for a in aliases]
    if model_id is None:
        return identified(JsonResponse({"object": "list", "data": entries}))
    found = next((e for e in entries if e["id"] == model_id), None)
    if found is None:
        return openai_error(
            404,
            f"The model `{model_id}` does not exist or you do not have access to it.",
            field="model",
            code="model_not_found",
        )
    return identified(JsonResponse(found))


class ChatCompletionsSchema(APIView):
    """Documents POST /v1/chat/completions, which the async chat_completions serves."""

    @extend_schema(
        request={"application/json": asks.ChatCompletionInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: OpenApiTypes.OBJECT},
        description="OpenAI-compatible chat completions for the official openai SDK and "
        "frameworks: set `base_url` to llmops' `/v1` and `api_key` to a gateway key. The body "
        "is relayed as sent (tools, response_format, stop, seed, n, logprobs, content parts "
        "and any other field) and the answer comes back as the provider sent it; a Claude model "
        "gets it translated, and a parameter it cannot honour is a 400 naming it. The workload "
        "comes from the `X-Workload` header, else the key's default workload. `model` is the "
        "client's: the policy's primary or an alias (`auto`) is the chain with its fallbacks, "
        "another model of the chain is that model alone, an unknown one is 404 "
        "`model_not_found`. A provider's 4xx is passed on; every provider busy is 429/503 "
        "with Retry-After. Every response carries `x-request-id`: the request's id in "
        "`/api/v1/requests`. Always answers now.",
    )
    def post(self, request):  # pragma: no cover - routed to chat_completions
        raise Http404


class ResponsesSchema(APIView):
    """Documents POST /v1/responses, which the async responses view serves."""

    @extend_schema(
        request={"application/json": asks.ResponsesInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: OpenApiTypes.OBJECT},
        description="OpenAI's Responses API for the official openai SDK and frameworks "
        "(LangChain `use_responses_api`, pydantic-ai `OpenAIResponsesModel`): `input` as text "
        "or items (messages, `function_call`, `function_call_output`), `instructions`, "
        "function `tools`, `text.format`, `max_output_tokens`, `reasoning`, streamed with the "
        "full event sequence. Relayed as sent to an OpenAI-protocol model; translated for a "
        "Claude model, where what cannot be honoured is a 400 naming it. "
        "`previous_response_id` continues a conversation on the provider that holds it "
        "(llmops keeps Claude's); naming a model elsewhere is a 400. Stored responses are read "
        "and deleted at `/v1/responses/{id}`. Billed like chat; the workload comes from "
        "`X-Workload`, else the key's default workload.",
    )
    def post(self, request):  # pragma: no cover - routed to responses
        raise Http404


class EmbeddingsSchema(APIView):
    """Documents POST /v1/embeddings, which the async embeddings view serves."""

    @extend_schema(
        request={"application/json": asks.EmbeddingsInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: OpenApiTypes.OBJECT},
        description="OpenAI-compatible embeddings for the official openai SDK: `input` as a "
        "string, strings, a token array or token arrays; `encoding_format` float or base64 "
        "(the SDK's default); `dimensions`. Relayed as sent to the embedding model the client "
        "names (an alias or the policy's primary: its chain), the vectors as the provider made "
        "them; billed per input token. A chat model here is a 400 `wrong_model_kind`. The "
        "workload comes from `X-Workload`, else the key's default workload.",
    )
    def post(self, request):  # pragma: no cover - routed to embeddings
        raise Http404


chat_completions = csrf_exempt(chat_completions)
chat_completions.cls = ChatCompletionsSchema
chat_completions.initkwargs = {}
embeddings = csrf_exempt(embeddings)
embeddings.cls = EmbeddingsSchema
embeddings.initkwargs = {}
responses = csrf_exempt(responses)
responses.cls = ResponsesSchema
responses.initkwargs = {}
