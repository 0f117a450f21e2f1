"""The native REST API: who the caller is, models, workloads, and requests (submitted, listed,
read, cancelled) and embeddings for a workload. Every object is scoped to the caller's team.
The OpenAI-compatible surface is routing/openai_apis.py."""

from __future__ import annotations

from asgiref.sync import sync_to_async
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
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import services as batches_services
from llmops.dbthreads import db
from routing import asks, outputs, selectors, services
from routing.auth import KeyPrincipal
from routing.models import LatencyClass, Request, Tier
from routing.providers import Delta
from routing.serving import (
    REPLAY_STATUS,
    SSE_HEADERS,
    UPSTREAM_FAILED,
    StreamBody,
    admit,
    identified,
    method_not_allowed,
    native_error,
    sse,
)


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
    serializer_class = outputs.RequestOutputSerializer

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
    serializer_class = outputs.RequestOutputSerializer
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
        responses={200: outputs.RequestOutputSerializer, 409: outputs.RequestOutputSerializer},
    )
    def post(self, request, id):
        found = selectors.request_list(user=request.user).filter(pk=id).first()
        if found is None:
            raise Http404
        cancelled = batches_services.request_cancel(request=found)
        found = selectors.request_list(user=request.user).get(pk=id)
        return Response(
            outputs.RequestOutputSerializer(found).data,
            status=status.HTTP_200_OK if cancelled else status.HTTP_409_CONFLICT,
        )


async def request_create(http_request, surface: str = "chat"):
    """POST /api/v1/requests (and /api/v1/embeddings): 200 with the completed request, an SSE
    stream, or 202 queued."""
    admitted, error = await admit(http_request, openai=False, surface=surface)
    if error is not None:
        return error
    request = admitted.request
    if request.params.get("stream") and request.status == Request.Status.COMPLETED:
        return StreamingHttpResponse(
            _native_replay_stream(request), content_type="text/event-stream", headers=SSE_HEADERS
        )
    if admitted.replay and request.status in (Request.Status.RECEIVED, Request.Status.RUNNING):
        return native_error(
            409,
            f"The request with this Idempotency-Key is still {request.status}.",
            field="idempotency_key",
            code="in_progress",
        )
    if admitted.replay or request.status in (Request.Status.COMPLETED, Request.Status.QUEUED):
        body = await db(outputs.request_json, request)
        if request.status == Request.Status.FAILED:
            body["detail"] = UPSTREAM_FAILED.format(error=request.error)
        return JsonResponse(body, status=REPLAY_STATUS.get(request.status, 200))
    if request.params.get("stream"):
        return StreamingHttpResponse(
            StreamBody(_native_stream(admitted), admitted),
            content_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    admitted.render = outputs.answered_json  # in the unit that completes it
    try:
        async for event in services.request_run(admitted, stream=False):
            request = event
    except services.RequestFailed as exc:
        body = await db(outputs.request_json, exc.request)
        return identified(
            JsonResponse({**body, "detail": str(exc)}, status=exc.status),
            body["id"],
            retry_after=exc.retry_after,
        )
    return JsonResponse(admitted.rendered or await db(outputs.request_json, request))


async def _native_stream(admitted: services.Admitted):
    yield sse("started", {"request_id": str(admitted.request.pk)})
    try:
        async for event in services.request_run(admitted, stream=True):
            if isinstance(event, Delta):
                if event.text:  # a relayed chunk may carry none (the finish, the usage)
                    yield sse("delta", {"text": event.text})
            else:
                yield sse("done", await db(outputs.request_json, event))
    except services.RequestFailed as exc:
        yield sse("error", {"message": str(exc), "request_id": str(admitted.request.pk)})


async def _native_replay_stream(request: Request):
    """A completed request (a cache hit, an idempotent retry) told as a stream."""
    body = await db(outputs.request_json, request)
    yield sse("started", {"request_id": body["id"]})
    yield sse("delta", {"text": body["output"]})
    yield sse("done", body)


class RequestCollectionSchema(RequestListApi):
    """GET lists requests; POST is served by the async request_create. This class serves GET
    and tells the OpenAPI schema about POST."""

    # The async view reads JSON only and authenticates API keys only: say so, rather than
    # the form bodies and session cookie DRF's defaults would document.
    @extend_schema(
        request={"application/json": asks.RequestInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: outputs.RequestOutputSerializer, 202: outputs.RequestOutputSerializer},
        description="Submit a request. 200 with the completed request (realtime or a cache "
        "hit); `text/event-stream` when `stream` is true (events `started`, `delta`, `done`, "
        "`error`); 202 with the queued request when the workload is deferred to a batch. "
        "An `Idempotency-Key` header (or `idempotency_key`) replays the same request; the "
        "same key with another body is 422.",
    )
    def post(self, request):  # pragma: no cover - POST never reaches DRF (requests_endpoint)
        raise Http404


class NativeEmbeddingsSchema(APIView):
    """Documents POST /api/v1/embeddings, which the async native_embeddings serves."""

    @extend_schema(
        request={"application/json": asks.NativeEmbeddingsInputSerializer},
        auth=[{"ApiKey": []}],
        responses={200: outputs.RequestOutputSerializer, 202: outputs.RequestOutputSerializer},
        description="Embed a workload's input. 200 with the completed request and its "
        "`embeddings` (realtime or a cache hit); 202 with a queued ticket when the workload "
        "defers to a provider batch of /v1/embeddings lines at the batch price (fetch it from "
        "`/api/v1/requests/{id}`, or have it pushed to the workload's webhook). A chat "
        "workload is a 400 `wrong_model_kind`.",
    )
    def post(self, request):  # pragma: no cover - routed to native_embeddings
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
        return method_not_allowed("POST", openai=False)
    return await request_create(http_request, surface="embeddings")


# drf-spectacular documents a URL by the DRF class it finds on the view function.
requests_endpoint.cls = RequestCollectionSchema
requests_endpoint.initkwargs = {}
native_embeddings.cls = NativeEmbeddingsSchema
native_embeddings.initkwargs = {}
