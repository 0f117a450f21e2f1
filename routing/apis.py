"""Native REST API and the OpenAI-compatible endpoint. Every object is scoped to the caller's
team."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid

from asgiref.sync import async_to_sync, sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import AuthenticationFailed, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import services as batches_services
from billing.pricing import Usage
from llmops.dbthreads import db
from routing import asks, selectors, services
from routing.auth import ApiKeyAuthentication, KeyPrincipal, throttle_key
from routing.models import ApiKey, LatencyClass, Request, Tier, Workload
from routing.protocols import openai, openai_chat
from routing.providers import Delta


class MeApi(APIView):
    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer):
        team = serializers.CharField(allow_null=True)
        teams = serializers.ListField(child=serializers.CharField())
        key = inline_serializer(
            "MeKey",
            fields={
                "name": serializers.CharField(),
                "prefix": serializers.CharField(),
                "role": serializers.CharField(),
            },
            allow_null=True,
        )

    @extend_schema(responses=OutputSerializer, summary="Who the caller is")
    def get(self, request):
        teams = [t.slug for t in selectors.teams_for(request.user)]
        key = None
        if isinstance(request.user, KeyPrincipal):
            k = request.user.api_key
            key = {"name": k.name, "prefix": k.prefix, "role": k.role}
        data = {"team": teams[0] if len(teams) == 1 else None, "teams": teams, "key": key}
        return Response(self.OutputSerializer(data).data)


class ModelListApi(generics.ListAPIView):
    @extend_schema_serializer(component_name="Model")
    class OutputSerializer(serializers.Serializer):
        provider = serializers.CharField(source="provider.slug")
        provider_kind = serializers.CharField(source="provider.kind")
        model = serializers.CharField(source="model_id")
        tier = serializers.ChoiceField(choices=Tier.choices)
        context_window = serializers.IntegerField()
        max_output_tokens = serializers.IntegerField()

    serializer_class = OutputSerializer

    def get_queryset(self):
        return selectors.model_list()


@extend_schema_serializer(component_name="Workload")
class WorkloadOutputSerializer(serializers.Serializer):
    team = serializers.CharField(source="team.slug")
    slug = serializers.CharField()
    description = serializers.CharField()
    latency_class = serializers.ChoiceField(choices=LatencyClass.choices)
    deadline_seconds = serializers.SerializerMethodField()
    policy = serializers.CharField(source="policy.name")
    enabled = serializers.BooleanField()

    def get_deadline_seconds(self, obj) -> int | None:
        return int(obj.deadline.total_seconds()) if obj.deadline else None


class WorkloadListApi(generics.ListAPIView):
    serializer_class = WorkloadOutputSerializer

    def get_queryset(self):
        return selectors.workload_list(user=self.request.user)


class WorkloadDetailApi(APIView):
    @extend_schema(
        responses=WorkloadOutputSerializer,
        parameters=[
            OpenApiParameter(
                "team",
                OpenApiTypes.STR,
                description="Needed only when the caller "
                "sees several teams with a workload of this slug.",
            )
        ],
    )
    def get(self, request, slug: str):
        matches = list(selectors.workload_list(user=request.user).filter(slug=slug))
        if team := request.query_params.get("team"):
            matches = [w for w in matches if w.team.slug == team]
        if not matches:
            raise Http404
        if len(matches) > 1:
            raise ValidationError(
                {"team": ["Several of your teams have this workload; pass ?team=."]}
            )
        return Response(WorkloadOutputSerializer(matches[0]).data)


class RequestListApi(generics.ListAPIView):
    serializer_class = asks.RequestOutputSerializer

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=Request.Status.choices, required=False)
        workload = serializers.SlugField(required=False)

    @extend_schema(parameters=[FilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.request_list(user=self.request.user, **filters.validated_data)


class RequestDetailApi(generics.RetrieveAPIView):
    serializer_class = asks.RequestOutputSerializer
    lookup_field = "id"

    def get_queryset(self):
        return selectors.request_list(user=self.request.user)

    def retrieve(self, request, *args, **kwargs):
        instance = self.get_object()
        services.request_mark_read(request=instance)
        return Response(self.get_serializer(instance).data)


class RequestCancelApi(APIView):
    """Cancel a request that has not finished: a queued one leaves the buffer, its hold is
    released. A request that already finished is answered as it is, with 409."""

    @extend_schema(
        request=None,
        responses={200: asks.RequestOutputSerializer, 409: asks.RequestOutputSerializer},
    )
    def post(self, request, id):
        found = selectors.request_list(user=request.user).filter(pk=id).first()
        if found is None:
            raise Http404
        cancelled = batches_services.request_cancel(request=found)
        found = selectors.request_list(user=request.user).get(pk=id)
        return Response(
            asks.RequestOutputSerializer(found).data,
            status=status.HTTP_200_OK if cancelled else status.HTTP_409_CONFLICT,
        )


# --- serving: POST /api/v1/requests and the OpenAI-compatible /v1/chat/completions ---------
#
# These are async views, not DRF ones: a provider call takes seconds, and Django runs every
# sync view of an ASGI server on one shared thread, so a sync view would serialise all
# traffic behind the slowest completion. DRF still validates (in a worker thread) and
# documents them: the schema classes below describe the bodies.


def _error(status: int, message: str, *, field: str = "", code: str = "") -> JsonResponse:
    body = {"detail": message, "code": code or "invalid_request"}
    if field:
        body["field"] = field
    return JsonResponse(body, status=status)


def _openai_error(
    status: int,
    message: str,
    *,
    field: str = "",
    code: str = "",
    rid: str | None = None,
    retry_after: float | None = None,
) -> JsonResponse:
    return _identified(
        JsonResponse(openai.error_body(status, message, param=field, code=code), status=status),
        rid,
        retry_after=retry_after,
    )


def _authenticate(http_request) -> ApiKey:
    found = ApiKeyAuthentication().authenticate(http_request)
    if found is None:
        raise AuthenticationFailed("Authentication credentials were not provided.")
    return found[1]


# Each surface's body serializer and the Ask it makes: OpenAI-compatible, and native.
OPENAI_SURFACES = {
    "chat": (asks.ChatCompletionInputSerializer, asks.openai_ask),
    "embeddings": (asks.EmbeddingsInputSerializer, asks.embeddings_ask),
}
NATIVE_SURFACES = {
    "chat": (asks.RequestInputSerializer, asks.native_ask),
    "embeddings": (asks.NativeEmbeddingsInputSerializer, asks.native_embeddings_ask),
}


def _prepare(http_request, *, openai: bool, surface: str = "chat") -> services.Admitted:
    """Authenticate, validate and admit (sync: runs in a worker thread)."""
    key = _authenticate(http_request)
    if (wait := throttle_key(http_request, key)) is not None:
        raise asks.RequestRejected(
            429,
            f"Too many requests for this API key; retry in {wait:.0f} s.",
            code="throttled",
            retry_after=wait,
        )
    body = asks.json_object(http_request.body)
    # chat_completions reads stream_options from it after admission, without a second parse.
    http_request.llmops_body = body
    serializer_class, make_ask = (OPENAI_SURFACES if openai else NATIVE_SURFACES)[surface]
    serializer = serializer_class(data=body)
    if not serializer.is_valid():
        field, message = asks.first_error(serializer.errors)
        raise asks.RequestRejected(400, f"{field}: {message}", field=field)
    data = serializer.validated_data
    team = key.team
    if not openai:
        ask = make_ask(
            workloads=Workload.objects.filter(team=team),
            data=data,
            idempotency_key=data.get("idempotency_key")
            or http_request.headers.get("Idempotency-Key"),
        )
        return services.request_admit(team=team, api_key=key, ask=ask, sync_only=False)
    ask = make_ask(
        asks.openai_workload(http_request, key),
        data,
        source=Request.Source.OPENAI,
        idempotency_key=http_request.headers.get("Idempotency-Key"),
    )
    return services.request_admit(team=team, api_key=key, ask=ask, sync_only=True)


async def _admit(http_request, *, openai: bool, surface: str = "chat"):
    """(admitted, None) or (None, an error response)."""
    fail = _openai_error if openai else _error
    admission = asyncio.ensure_future(db(_prepare, http_request, openai=openai, surface=surface))
    try:
        return await asyncio.shield(admission), None
    except asyncio.CancelledError:
        # The client left during admission. The admission still completes in its database
        # thread, and would leave a running request holding budget that nobody will run.
        with contextlib.suppress(Exception):
            admitted = await admission
            if not admitted.replay:  # a replay's original is still someone else's
                await db(services.request_abandon, admitted)
        raise
    except AuthenticationFailed as exc:
        return None, fail(401, str(exc.detail), code="unauthorized")
    except asks.RequestRejected as exc:
        response = fail(exc.status, exc.message, field=exc.field, code=exc.code)
        if exc.retry_after is not None:
            response = _identified(
                response, response.get("x-request-id"), retry_after=exc.retry_after
            )
        return None, response


def _sse(event: str | None, data) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data, cls=DjangoJSONEncoder)
    return f"{head}data: {payload}\n\n".encode()


async def request_create(http_request, surface: str = "chat"):
    """POST /api/v1/requests (and /api/v1/embeddings): 200 with the completed request, an SSE
    stream, or 202 queued."""
    admitted, error = await _admit(http_request, openai=False, surface=surface)
    if error is not None:
        return error
    request = admitted.request
    if request.params.get("stream") and request.status == Request.Status.COMPLETED:
        return StreamingHttpResponse(
            _native_replay_stream(request), content_type="text/event-stream", headers=SSE_HEADERS
        )
    if admitted.replay and request.status in (Request.Status.RECEIVED, Request.Status.RUNNING):
        return _error(
            409,
            f"The request with this Idempotency-Key is still {request.status}.",
            field="idempotency_key",
            code="in_progress",
        )
    if admitted.replay or request.status in (Request.Status.COMPLETED, Request.Status.QUEUED):
        body = await db(asks.request_json, request)
        if request.status == Request.Status.FAILED:
            body["detail"] = UPSTREAM_FAILED.format(error=request.error)
        return JsonResponse(body, status=REPLAY_STATUS.get(request.status, 200))
    if request.params.get("stream"):
        return StreamingHttpResponse(
            _StreamBody(_native_stream(admitted), admitted),
            content_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    try:
        async for event in services.request_run(admitted, stream=False):
            request = event
    except services.RequestFailed as exc:
        body = await db(asks.request_json, exc.request)
        return _identified(
            JsonResponse({**body, "detail": str(exc)}, status=exc.status),
            body["id"],
            retry_after=exc.retry_after,
        )
    return JsonResponse(await db(asks.request_json, request))


class _StreamBody:
    """A streamed request's response body. If the client leaves before the body's first read,
    request_run never starts (or, when the view awaited its first event, waits at it), so its
    own clean-up cannot run and the request would stay running with its hold taken; Django
    closes the body however the response ended, and a body never read settles it then: the
    hold given back, or the started call closed and billed as request_run does for a client
    gone."""

    def __init__(self, body, admitted: services.Admitted, events=None) -> None:
        self.body, self.admitted, self.started = body, admitted, False
        self.events = events

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        self.started = True
        return await self.body.__anext__()

    def close(self) -> None:  # sync: Django calls it through sync_to_async
        if self.started:
            return
        if self.events is not None:
            async_to_sync(self.events.aclose)()
        services.request_abandon(self.admitted)  # a no-op once the request is closed


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
REPLAY_STATUS = {Request.Status.QUEUED: 202, Request.Status.FAILED: 502}
# What a replayed request that failed upstream (every model of its chain) says: the first
# answer's message. A refusal at admission replays by itself (services.refusal_of).
UPSTREAM_FAILED = "Every model in the chain failed: {error}"


async def _native_stream(admitted: services.Admitted):
    yield _sse("started", {"request_id": str(admitted.request.pk)})
    try:
        async for event in services.request_run(admitted, stream=True):
            if isinstance(event, Delta):
                if event.text:  # a relayed chunk may carry none (the finish, the usage)
                    yield _sse("delta", {"text": event.text})
            else:
                yield _sse("done", await db(asks.request_json, event))
    except services.RequestFailed as exc:
        yield _sse("error", {"message": str(exc), "request_id": str(admitted.request.pk)})


async def _native_replay_stream(request: Request):
    """A completed request (a cache hit, an idempotent retry) told as a stream."""
    body = await db(asks.request_json, request)
    yield _sse("started", {"request_id": body["id"]})
    yield _sse("delta", {"text": body["output"]})
    yield _sse("done", body)


async def chat_completions(http_request):
    """POST /v1/chat/completions for OpenAI clients: the body relayed as sent to the model the
    client named (or its policy's chain), the answer relayed as the provider sent it."""
    if http_request.method != "POST":
        response = _openai_error(405, "Only POST is supported.", code="method_not_allowed")
        response["Allow"] = "POST"
        return response
    admitted, error = await _admit(http_request, openai=True)
    if error is not None:
        return error
    request = admitted.request
    rid = str(request.pk)
    stream = request.params.get("stream")
    include_usage = bool(
        (http_request.llmops_body.get("stream_options") or {}).get("include_usage")
    )
    if request.status == Request.Status.COMPLETED:
        if stream:
            return _identified(
                StreamingHttpResponse(
                    _openai_replay_stream(request, include_usage),
                    content_type="text/event-stream",
                    headers=SSE_HEADERS,
                ),
                rid,
            )
        return _identified(JsonResponse(await db(_openai_body, request)), rid)
    if admitted.replay:
        return _openai_unfinished_replay(request, rid)
    if stream:
        # The first event before the response starts: a request refused upstream (a provider's
        # 400, every provider busy) is answered with its status, as the provider would, not as
        # an error inside a 200 stream.
        events = services.request_run(admitted, stream=True)
        try:
            first = await events.__anext__()
        except services.RequestFailed as exc:
            return _openai_failure(exc, rid)
        return _identified(
            StreamingHttpResponse(
                _StreamBody(
                    _openai_stream(admitted, events, first, include_usage), admitted, events
                ),
                content_type="text/event-stream",
                headers=SSE_HEADERS,
            ),
            rid,
        )
    try:
        async for event in services.request_run(admitted, stream=False):
            request = event
    except services.RequestFailed as exc:
        return _openai_failure(exc, rid)
    return _identified(JsonResponse(await db(_openai_body, request)), rid)


async def embeddings(http_request):
    """POST /v1/embeddings for OpenAI clients: the body relayed as sent to the embedding model
    the client named (or its policy's chain), the answer as the provider sent it (vectors in
    the encoding asked for), billed per input token."""
    if http_request.method != "POST":
        response = _openai_error(405, "Only POST is supported.", code="method_not_allowed")
        response["Allow"] = "POST"
        return response
    admitted, error = await _admit(http_request, openai=True, surface="embeddings")
    if error is not None:
        return error
    request = admitted.request
    rid = str(request.pk)
    if admitted.replay and request.status != Request.Status.COMPLETED:
        return _openai_unfinished_replay(request, rid)
    if request.status != Request.Status.COMPLETED:  # not a cache hit: ask the provider
        try:
            async for event in services.request_run(admitted, stream=False):
                request = event
        except services.RequestFailed as exc:
            return _openai_failure(exc, rid)
    # The answer as the provider sent it (kept whole: a replay and a cache hit repeat it).
    return _identified(JsonResponse(request.answer), rid)


def _openai_unfinished_replay(request: Request, rid: str) -> JsonResponse:
    """An Idempotency-Key retry of a request that did not complete."""
    if request.status == Request.Status.FAILED:
        return _openai_error(
            502, UPSTREAM_FAILED.format(error=request.error), code="upstream_failed", rid=rid
        )
    # Still running, or cancelled (its client left): a 409, which the SDK retries.
    return _openai_error(
        409,
        f"The request with this Idempotency-Key is {request.status}.",
        code="in_progress",
        rid=rid,
    )


def _identified(response, rid: str | None = None, *, retry_after: float | None = None):
    """Every /v1 answer names its request (x-request-id: the SDKs' `_request_id`, the id to
    look the request up by) and, when trying again later can succeed, how long to wait."""
    response["x-request-id"] = rid or f"req_{uuid.uuid4().hex}"
    if retry_after is not None:
        # The SDKs read retry-after-ms first (a wait under a second), then retry-after.
        response["retry-after-ms"] = str(max(1, round(retry_after * 1000)))
        response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _openai_failure(exc: services.RequestFailed, rid: str) -> JsonResponse:
    """A request that no provider answered: a provider's refusal as the provider worded it,
    every provider busy as 429/503 with Retry-After, anything else 502."""
    refusal = exc.provider_error
    if refusal is not None and refusal.body is not None:
        body = openai.error_envelope(refusal.body, status=exc.status)
        return _identified(JsonResponse(body, status=exc.status), rid)
    code = {429: "rate_limit_exceeded", 503: "overloaded"}.get(exc.status, "upstream_failed")
    return _openai_error(exc.status, str(exc), code=code, rid=rid, retry_after=exc.retry_after)


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


async def _openai_stream(admitted: services.Admitted, events, first, include_usage: bool):
    """The stream as the provider sent it (a relay: each event's bytes), or rendered here
    (a translated answer's text), then [DONE] once the answer is billed."""
    request = admitted.request
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
                    yield _sse(None, _chunk(ident, created, admitted.serving.model_id, delta))
            elif not _relayed(event):
                answer = asks.answer_of(event)
                usage = _token_usage(event) if include_usage else None
                model = event.model.model_id
                finish = openai_chat.first_finish(answer)
                yield _sse(None, _chunk(ident, created, model, {}, finish=finish))
                if usage is not None:
                    yield _sse(
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
        yield _sse(
            None, {"error": {"message": str(exc), "type": "api_error", "code": "upstream_failed"}}
        )
    yield _sse(None, "[DONE]")


def _relayed(request: Request) -> bool:
    """Whether a request's answer came relayed from an OpenAI-protocol provider (its stream
    already held every chunk, finish and usage included)."""
    return request.model.provider.kind != "anthropic"


def _chunk(ident: str, created: int, model: str, delta: dict, *, finish=None) -> dict:
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


async def _openai_replay_stream(request: Request, include_usage: bool):
    """A completed request (a cache hit, an idempotent retry) told as a stream."""
    request = await db(Request.objects.select_related("model").get, pk=request.pk)
    answer = asks.answer_of(request)
    chunks = openai_chat.answer_chunks(
        answer,
        usage=_token_usage(request) if include_usage else None,
        **_openai_identity(request, answer),
    )
    for chunk in chunks:
        yield _sse(None, chunk)
    yield _sse(None, "[DONE]")


# --- GET /v1/models ------------------------------------------------------------------------


@csrf_exempt
def openai_models(http_request, model_id: str | None = None):
    """GET /v1/models and /v1/models/{id}: what the key's team may name as `model` (its
    workloads' chains, every enabled model where a policy allows any, and the policies'
    aliases), in OpenAI's shape; an id it may not name is a 404 model_not_found."""
    if http_request.method != "GET":
        response = _openai_error(405, "Only GET is supported.", code="method_not_allowed")
        response["Allow"] = "GET"
        return response
    try:
        key = _authenticate(http_request)
    except AuthenticationFailed as exc:
        return _openai_error(401, str(exc.detail), code="invalid_api_key")
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
        return _identified(JsonResponse({"object": "list", "data": entries}))
    found = next((e for e in entries if e["id"] == model_id), None)
    if found is None:
        return _openai_error(
            404,
            f"The model `{model_id}` does not exist or you do not have access to it.",
            field="model",
            code="model_not_found",
        )
    return _identified(JsonResponse(found))


class RequestCollectionSchema(RequestListApi):
    """GET lists requests; POST is served by the async request_create. This class serves GET
    and tells the OpenAPI schema about POST."""

    # The async view reads JSON only and authenticates API keys only: say so, rather than
    # the form bodies and session cookie DRF's defaults would document.
    @extend_schema(
        request={"application/json": asks.RequestInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: asks.RequestOutputSerializer, 202: asks.RequestOutputSerializer},
        description="Submit a request. 200 with the completed request (realtime or a cache "
        "hit); `text/event-stream` when `stream` is true (events `started`, `delta`, `done`, "
        "`error`); 202 with the queued request when the workload is deferred to a batch. "
        "An `Idempotency-Key` header (or `idempotency_key`) replays the same request; the "
        "same key with another body is 422.",
    )
    def post(self, request):  # pragma: no cover - POST never reaches DRF (requests_endpoint)
        raise Http404


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


class NativeEmbeddingsSchema(APIView):
    """Documents POST /api/v1/embeddings, which the async native_embeddings serves."""

    @extend_schema(
        request={"application/json": asks.NativeEmbeddingsInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: asks.RequestOutputSerializer, 202: asks.RequestOutputSerializer},
        description="Embed a workload's input. 200 with the completed request and its "
        "`embeddings` (realtime or a cache hit); 202 with a queued ticket when the workload "
        "defers to a provider batch of /v1/embeddings lines at the batch price (fetch it from "
        "`/api/v1/requests/{id}`, or have it pushed to the workload's webhook). A chat "
        "workload is a 400 `wrong_model_kind`.",
    )
    def post(self, request):  # pragma: no cover - routed to native_embeddings
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


_request_list_view = RequestCollectionSchema.as_view()


@csrf_exempt
async def requests_endpoint(http_request):
    if http_request.method == "POST":
        return await request_create(http_request)
    return await sync_to_async(_request_list_view)(http_request)


@csrf_exempt
async def native_embeddings(http_request):
    """POST /api/v1/embeddings: a workload's embeddings, 200 with the completed request (its
    `embeddings`), or 202 with a ticket when the workload defers them to a provider batch."""
    if http_request.method != "POST":
        response = _error(405, "Only POST is supported.", code="method_not_allowed")
        response["Allow"] = "POST"
        return response
    return await request_create(http_request, surface="embeddings")


# drf-spectacular documents a URL by the DRF class it finds on the view function.
requests_endpoint.cls = RequestCollectionSchema
requests_endpoint.initkwargs = {}
chat_completions = csrf_exempt(chat_completions)
chat_completions.cls = ChatCompletionsSchema
chat_completions.initkwargs = {}
embeddings = csrf_exempt(embeddings)
embeddings.cls = EmbeddingsSchema
embeddings.initkwargs = {}
native_embeddings.cls = NativeEmbeddingsSchema
native_embeddings.initkwargs = {}
