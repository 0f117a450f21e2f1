"""The Anthropic-compatible API for the official anthropic SDK and Claude Code
(`ANTHROPIC_BASE_URL` pointed at llmops): Messages, count_tokens and the models list in
Anthropic's shape. Relayed as sent to a Claude model (with the client's anthropic-version and
betas), translated for an OpenAI model; errors in Anthropic's shape, every response naming
its request in `request-id` (the anthropic SDK's) and `x-request-id`."""

from __future__ import annotations

import math
from datetime import UTC

from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.views import APIView

from billing.pricing import PROMPT_OPTIONS, prompt_tokens_bound
from llmops.dbthreads import db
from routing import asks, conversations, message_asks, providers, selectors, services
from routing.auth import throttle_key
from routing.config import policy_chain
from routing.models import LlmModel, Request
from routing.protocols import anthropic_messages
from routing.providers import ProviderError
from routing.serving import (
    UPSTREAM_FAILED,
    Protocol,
    authenticate,
    identified,
    method_not_allowed,
    protocol_stream,
    serve,
)


def anthropic_error(
    status: int,
    message: str,
    *,
    field: str = "",
    code: str = "",
    rid: str | None = None,
    retry_after: float | None = None,
) -> JsonResponse:
    """Anthropic's error envelope; the SDK picks its exception class by the status and reads
    error.type and error.message (llmops' own code and field go into the message's words)."""
    body = anthropic_messages.error_body(status, message, request_id=rid)
    return named(JsonResponse(body, status=status), rid, retry_after=retry_after)


def named(response, rid: str | None = None, *, retry_after: float | None = None):
    """serving.identified, plus Anthropic's own request-id header."""
    response = identified(response, rid, retry_after=retry_after)
    response["request-id"] = response["x-request-id"]
    return response


def _relayed(model: LlmModel) -> bool:
    """Whether `model` answers in Anthropic's protocol (its Message and events are relayed)."""
    return model.provider.kind == "anthropic"


async def messages(http_request):
    """POST /v1/messages (Claude Code adds `?beta=true`): relayed as sent to a Claude model,
    translated for an OpenAI one (what it cannot honour is a 400 naming it); streamed with
    Anthropic's exact event sequence; billed like chat, cache reads and writes at their
    prices."""
    return await serve(
        http_request,
        surface="messages",
        protocol=ANTHROPIC,
        body=_as_answered,
        replay=_messages_replay,
        stream=_messages_stream,
    )


async def _as_answered(request: Request) -> dict:
    """The Message as the provider sent it, or as llmops rendered an OpenAI model's answer."""
    return request.answer


def _messages_replay(request: Request):
    """A completed request (a cache hit, an idempotent retry) told as a stream."""
    return (anthropic_messages.sse(e) for e in anthropic_messages.answer_events(request.answer))


def _messages_stream(admitted: services.Admitted, events, first):
    """The provider's events as it sent them (a relay), or rendered here from an OpenAI
    model's deltas. Either way the closing `message_stop` leaves only once the answer is
    billed; a failure after the start is Anthropic's error event (the SDK raises it)."""
    rendered = None
    if not _relayed(admitted.serving):  # known once the first event came: no fallback now
        rendered = anthropic_messages.MessageEvents(
            id=conversations.message_id(admitted.request), model=admitted.serving.model_id
        )
    return protocol_stream(
        events,
        first,
        rendered=rendered,
        sse=anthropic_messages.sse,
        failed=lambda message: [
            {"type": "error", "error": {"type": "api_error", "message": message}}
        ],
    )


def _failure(exc: services.RequestFailed, rid: str) -> JsonResponse:
    """A request no provider answered: a provider's refusal as the provider worded it (an
    OpenAI model's in Anthropic's envelope), every provider busy as 429/529 with
    Retry-After, anything else 502."""
    refusal = exc.provider_error
    if refusal is not None and refusal.body is not None:
        body = anthropic_messages.error_envelope(refusal.body, status=exc.status, message=str(exc))
        body["request_id"] = rid
        return named(JsonResponse(body, status=exc.status), rid)
    # Anthropic says overloaded with 529, which the SDK retries as it does 503.
    status = 529 if exc.status == 503 else exc.status
    return anthropic_error(status, str(exc), rid=rid, retry_after=exc.retry_after)


def _unfinished_replay(request: Request, rid: str) -> JsonResponse:
    """An Idempotency-Key retry of a request that did not complete."""
    if request.status == Request.Status.FAILED:
        return anthropic_error(502, UPSTREAM_FAILED.format(error=request.error), rid=rid)
    return anthropic_error(
        409, f"The request with this Idempotency-Key is {request.status}.", rid=rid
    )


ANTHROPIC = Protocol(
    fail=anthropic_error, failure=_failure, unfinished=_unfinished_replay, name=named
)


# --- POST /v1/messages/count_tokens ----------------------------------------------------------


def _count_target(http_request) -> tuple[LlmModel, dict, dict]:
    """(the model that would serve, its provider-ready body, the relayed headers): sync."""
    key = authenticate(http_request)
    # Free to the caller, not to llmops (a Claude count is a provider call on its key).
    if (wait := throttle_key(http_request, key)) is not None:
        raise asks.RequestRejected(
            429, f"Too many requests for this API key; retry in {wait:.0f} s.", retry_after=wait
        )
    body = asks.json_object(http_request.body)
    serializer = message_asks.CountTokensInputSerializer(data=body)
    if not serializer.is_valid():
        field, message = asks.first_error(serializer.errors)
        raise asks.RequestRejected(400, f"{field}: {message}", field=field)
    data = serializer.validated_data
    workload = asks.openai_workload(http_request, key)
    model, _pinned = asks.openai_model(workload, data["model"], kind=LlmModel.Kind.CHAT)
    if model is None:  # an alias or the primary: the chain's first usable model
        chain = policy_chain(workload.policy_id)
        model = next((m for m in chain if m.enabled and m.provider.enabled), None)
    if model is None:
        raise asks.RequestRejected(
            400, f"Workload {workload.slug} has no usable model.", field="model"
        )
    return model, data["options"], message_asks.relayed_headers(http_request)


async def count_tokens(http_request):
    """POST /v1/messages/count_tokens: a Claude model's count from its provider (free, as at
    Anthropic); an OpenAI model's estimated from the translated prompt (about four bytes a
    token: no tokenizer is shipped), said so in `llmops-estimate: true`. Not billed."""
    if http_request.method != "POST":
        return method_not_allowed("POST", fail=anthropic_error)
    try:
        model, options, headers = await db(_count_target, http_request)
    except AuthenticationFailed as exc:
        return anthropic_error(401, str(exc.detail))
    except asks.RequestRejected as exc:
        return anthropic_error(exc.status, exc.message, retry_after=exc.retry_after)
    if _relayed(model):
        try:
            answer = await providers.count_tokens(
                model.provider.endpoint(), model=model.model_id, options=options, headers=headers
            )
        except ProviderError as exc:
            if exc.body is not None:
                body = anthropic_messages.error_envelope(
                    exc.body, status=exc.status, message=str(exc)
                )
                return named(JsonResponse(body, status=exc.status))
            return anthropic_error(exc.status or 502, str(exc), retry_after=exc.retry_after)
        return named(JsonResponse(answer))
    try:
        messages, chat = anthropic_messages.chat_of(options)
    except anthropic_messages.Untranslatable as exc:
        return anthropic_error(
            400, f"{exc.param}: cannot be honoured by {model.model_id} (openai protocol): {exc}"
        )
    response = named(JsonResponse({"input_tokens": _estimate(messages, chat)}))
    response["llmops-estimate"] = "true"
    return response


def _estimate(messages: list[dict], chat: dict) -> int:
    # prompt_tokens_bound counts a byte a token (an upper bound for admission); English BPE
    # text averages about four.
    bound = prompt_tokens_bound(messages, extra=tuple(chat.get(k) for k in PROMPT_OPTIONS))
    return max(1, math.ceil(bound / 4))


# --- GET /v1/models in Anthropic's shape --------------------------------------------------


def models_or(openai_view):
    """/v1/models for both protocols on one path: Anthropic's shape when the call carries
    Anthropic's headers (the anthropic SDK and Claude Code always send anthropic-version),
    else `openai_view`'s."""

    @csrf_exempt
    def view(http_request, model_id: str | None = None):
        if "anthropic-version" in http_request.headers:
            return anthropic_models(http_request, model_id)
        return openai_view(http_request, model_id)

    return view


def _model_info(model: LlmModel) -> dict:
    return {
        "type": "model",
        "id": model.model_id,
        "display_name": model.model_id,
        "created_at": model.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "lifecycle": "active",
        "max_input_tokens": model.context_window,
        "max_tokens": model.max_output_tokens,
    }


def _alias_info(alias: str) -> dict:
    return {
        "type": "model",
        "id": alias,
        "display_name": f"{alias} (llmops alias: the policy's chain)",
        "created_at": "1970-01-01T00:00:00Z",
        "lifecycle": "active",
    }


def anthropic_models(http_request, model_id: str | None = None):
    """GET /v1/models[/{id}] for Anthropic clients: the chat models and aliases the key's team
    may name, paged by limit / after_id / before_id as Anthropic pages."""
    if http_request.method != "GET":
        return method_not_allowed("GET", fail=anthropic_error)
    try:
        key = authenticate(http_request)
    except AuthenticationFailed as exc:
        return anthropic_error(401, str(exc.detail))
    models, aliases = selectors.models_for_team(key.team)
    entries = [_model_info(m) for m in models if m.kind == LlmModel.Kind.CHAT] + [
        _alias_info(a) for a in aliases
    ]
    if model_id is not None:
        found = next((e for e in entries if e["id"] == model_id), None)
        if found is None:
            return anthropic_error(404, f"model: {model_id}")
        return named(JsonResponse(found))
    query = http_request.GET
    try:
        limit = int(query.get("limit") or 20)
    except ValueError:
        return anthropic_error(400, "limit: Input should be a valid integer")
    if not 1 <= limit <= 1000:
        return anthropic_error(400, "limit: Input should be between 1 and 1000")
    ids = [e["id"] for e in entries]
    start, end = 0, len(entries)
    if (after := query.get("after_id")) is not None:
        start = ids.index(after) + 1 if after in ids else len(ids)
    if (before := query.get("before_id")) is not None:
        end = ids.index(before) if before in ids else 0
        start = max(start, end - limit)
    page = entries[start:end][:limit]
    return named(
        JsonResponse(
            {
                "data": page,
                "has_more": start + len(page) < end,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )
    )


class MessagesSchema(APIView):
    """Documents POST /v1/messages, which the async messages view serves."""

    @extend_schema(
        request={"application/json": message_asks.MessagesInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: OpenApiTypes.OBJECT},
        description="Anthropic's Messages API for the official anthropic SDK and Claude Code: "
        "set the SDK's `base_url` (or `ANTHROPIC_BASE_URL`) to llmops and the key to a gateway "
        "key (`x-api-key` or `Authorization: Bearer`). `anthropic-version` and `anthropic-beta` "
        "are relayed as sent. System blocks, tools with `tool_use`/`tool_result`, "
        "`cache_control` (cache reads and writes billed at their prices), thinking, "
        "`stop_sequences` and structured outputs; streamed with Anthropic's exact events. "
        "Relayed to a Claude model; translated for an OpenAI model, where what cannot be "
        "honoured is a 400 naming it. The workload comes from `X-Workload`, else the key's "
        "default workload. Always answers now.",
    )
    def post(self, request):  # pragma: no cover - routed to messages
        raise Http404


class CountTokensSchema(APIView):
    """Documents POST /v1/messages/count_tokens, which the async count_tokens view serves."""

    @extend_schema(
        request={"application/json": message_asks.CountTokensInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: OpenApiTypes.OBJECT},
        description="Anthropic's token count of a Messages body (no `max_tokens`): a Claude "
        "model's from its provider, an OpenAI model's estimated (header `llmops-estimate`). "
        "Free: nothing is billed.",
    )
    def post(self, request):  # pragma: no cover - routed to count_tokens
        raise Http404


messages = csrf_exempt(messages)
messages.cls = MessagesSchema
messages.initkwargs = {}
count_tokens = csrf_exempt(count_tokens)
count_tokens.cls = CountTokensSchema
count_tokens.initkwargs = {}
