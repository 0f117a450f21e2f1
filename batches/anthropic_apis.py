"""Anthropic's Message Batches API for the anthropic SDK (`client.messages.batches`): create,
retrieve, list, cancel and results, on llmops' own batch machinery
(batches/services/message_batches.py). Errors in Anthropic's shape; never a 409 (the SDK
retries it)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db.models import Q
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import services
from batches.models import ClientBatch
from batches.services import client_batches, message_batches
from llmops import limits
from llmops.negotiation import AnswerJsonWhateverAccept
from routing.asks import RequestRejected, first_error, openai_workload
from routing.auth import KeyPrincipal
from routing.models import ApiKey
from routing.protocols import anthropic_messages

_ANTHROPIC = {"auth": [{"ApiKey": []}], "tags": ["Anthropic-compatible message batches"]}
_OBJECT = {200: OpenApiTypes.OBJECT}


def anthropic_error(status: int, message: str) -> Response:
    return Response(anthropic_messages.error_body(status, message), status=status)


class AnthropicView(APIView):
    """A key-authenticated view answering errors in Anthropic's shape."""

    content_negotiation_class = AnswerJsonWhateverAccept

    def handle_exception(self, exc):
        if isinstance(exc, services.SurfaceError):
            return anthropic_error(exc.status, exc.message)
        if isinstance(exc, Http404):
            return anthropic_error(404, str(exc) or "Not found.")
        if isinstance(exc, exceptions.APIException):
            detail = exc.detail
            if isinstance(detail, dict | list):
                field, message = first_error(detail)
                detail = f"{field}: {message}" if field else message
            return anthropic_error(exc.status_code, str(detail))
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        # Every answer names itself as Anthropic's do (the SDK's `_request_id`), errors too.
        response = super().finalize_response(request, response, *args, **kwargs)
        rid = response.get("x-request-id") or f"req_{uuid.uuid4().hex}"
        response["x-request-id"] = response["request-id"] = rid
        return response

    def key(self) -> ApiKey:
        if not isinstance(self.request.user, KeyPrincipal):
            raise exceptions.NotAuthenticated(
                "This API takes an API key: x-api-key or Authorization: Bearer."
            )
        return self.request.user.api_key

    def batch(self, batch_id: str) -> ClientBatch:
        found = (
            ClientBatch.objects.filter(
                pk=batch_id, team=self.key().team, id__startswith=message_batches.ID_PREFIX
            )
            .select_related("workload", "input_file")
            .first()
        )
        if found is None:
            raise Http404(f"No message batch {batch_id}.")
        return services.client_batch_refresh(batch=found)

    def batches_json(self, batches: list[ClientBatch]) -> list[dict]:
        return message_batches.message_batches_json(
            batches,
            results_url=lambda b: self.request.build_absolute_uri(
                f"/v1/messages/batches/{b.id}/results"
            ),
        )

    def batch_json(self, batch: ClientBatch) -> dict:
        [found] = self.batches_json([batch])
        return found


def _body(request) -> dict:
    """The create's JSON, read in pieces up to its own cap (Anthropic takes batches of up to
    256 MB; Django's in-memory body limit is the serving endpoints' 1 MB)."""
    cap = settings.LLMOPS_MAX_MESSAGE_BATCH_BYTES
    raw = bytearray()
    while piece := request._request.read(1 << 16):
        raw += piece
        if len(raw) > cap:
            raise services.SurfaceError(413, f"The body is over {cap} bytes.")
    try:
        body = limits.loads(bytes(raw) or b"null")
    except limits.Refused as exc:
        raise services.SurfaceError(exc.status, exc.message) from None
    if not isinstance(body, dict):
        raise services.SurfaceError(400, "The body must be a JSON object with `requests`.")
    return body


class MessageBatchCollectionApi(AnthropicView):
    # A create carries its requests in its body (Anthropic takes up to 256 MB).
    max_body_setting = "LLMOPS_MAX_MESSAGE_BATCH_BYTES"

    @extend_schema(
        **_ANTHROPIC,
        request={"application/json": OpenApiTypes.OBJECT},
        responses=_OBJECT,
        summary="Create a message batch (messages.batches.create)",
        description="Anthropic's `{requests: [{custom_id, params}]}`: the envelope is "
        "checked at once (custom_id unique and well formed, params an object without "
        "`stream`, one model for the batch), each request's params by a worker, as Anthropic "
        "checks them. Runs on llmops' batch machinery at the batch price, on the model the "
        "params name (a Claude model or an OpenAI one). The workload is `X-Workload`, else "
        "the key's default.",
    )
    def post(self, request):
        key = self.key()
        body = _body(request)
        try:
            workload = openai_workload(request, key)
            batch = message_batches.message_batch_create(
                api_key=key, workload=workload, requests=body.get("requests")
            )
        except RequestRejected as exc:
            raise services.SurfaceError(exc.status, exc.message) from None
        return Response(self.batch_json(batch))

    @extend_schema(
        **_ANTHROPIC,
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 1000 (default 20)."),
            OpenApiParameter("after_id", OpenApiTypes.STR),
            OpenApiParameter("before_id", OpenApiTypes.STR),
        ],
        responses=_OBJECT,
        operation_id="v1_messages_batches_list",
        summary="The team's message batches, newest first (messages.batches.list)",
    )
    def get(self, request):
        query = request.query_params
        try:
            limit = int(query.get("limit", 20))
        except ValueError:
            raise services.SurfaceError(400, "limit: Input should be a valid integer") from None
        if not 1 <= limit <= 1000:
            raise services.SurfaceError(400, "limit: Input should be between 1 and 1000")
        batches = ClientBatch.objects.filter(
            team=self.key().team, id__startswith=message_batches.ID_PREFIX
        ).select_related("workload", "input_file")
        after, before = query.get("after_id"), query.get("before_id")
        if before and not after:  # the page just newer than `before`, newest first
            anchor = self.batch(before)
            newer = batches.filter(
                Q(created_at__gt=anchor.created_at)
                | Q(created_at=anchor.created_at, pk__gt=anchor.pk)
            )
            rows = list(newer.order_by("created_at", "pk")[: limit + 1])
            has_more, rows = len(rows) > limit, rows[:limit][::-1]
        else:
            if after:
                anchor = self.batch(after)
                batches = batches.filter(
                    Q(created_at__lt=anchor.created_at)
                    | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
                )
            rows = list(batches.order_by("-created_at", "-pk")[: limit + 1])
            has_more, rows = len(rows) > limit, rows[:limit]
        data = self.batches_json([services.client_batch_refresh(batch=b) for b in rows])
        return Response(
            {
                "data": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )


class MessageBatchDetailApi(AnthropicView):
    @extend_schema(**_ANTHROPIC, responses=_OBJECT, summary="A message batch (retrieve)")
    def get(self, request, batch_id):
        return Response(self.batch_json(self.batch(batch_id)))


class MessageBatchCancelApi(AnthropicView):
    @extend_schema(
        **_ANTHROPIC,
        request=None,
        responses=_OBJECT,
        summary="Cancel a message batch (cancel): `canceling`, then `ended` with what "
        "finished before the cancel among its results, billed once",
    )
    def post(self, request, batch_id):
        batch = self.batch(batch_id)
        if not client_batches.client_batch_cancel(batch=batch):
            raise services.SurfaceError(400, f"Message batch {batch_id} has already ended.")
        batch.refresh_from_db()
        return Response(self.batch_json(services.client_batch_refresh(batch=batch)))


class MessageBatchResultsApi(AnthropicView):
    @extend_schema(
        **_ANTHROPIC,
        responses={(200, "application/binary"): OpenApiTypes.BINARY},
        summary="An ended batch's results, one JSONL line per request (results)",
    )
    def get(self, request, batch_id):
        batch = self.batch(batch_id)
        if batch.status not in ClientBatch.ENDED:
            raise services.SurfaceError(
                400, f"Message batch {batch_id} has not ended yet: its results are not ready."
            )
        return StreamingHttpResponse(
            message_batches.message_batch_results(batch), content_type="application/binary"
        )
