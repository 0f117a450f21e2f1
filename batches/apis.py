"""Native REST API for batch jobs: list, detail, items, cancel. Scoped to the caller's teams;
another team's job is a 404."""

from __future__ import annotations

from django.db.models import Q
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import exceptions, generics, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import jsonl, selectors, services
from batches.models import BatchItem, BatchJob, ClientBatch, StoredFile
from batches.services import client_batches
from billing.pricing import plain
from llmops.memory import release_free_memory
from llmops.negotiation import AnswerJsonWhateverAccept
from routing.asks import RequestRejected, first_error, openai_workload
from routing.auth import KeyPrincipal
from routing.models import ApiKey, LatencyClass
from routing.protocols import openai
from routing.selectors import teams_for


@extend_schema_serializer(component_name="BatchJob")
class JobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.slug")
    provider = serializers.CharField(source="provider.slug")
    model = serializers.CharField(source="model.model_id")
    lane = serializers.CharField()
    status = serializers.ChoiceField(choices=BatchJob.Status.choices)
    reason = serializers.CharField()
    provider_batch_id = serializers.CharField(allow_null=True)
    provider_status = serializers.CharField()
    counts = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField(help_text="0 to 1: share of items with an answer.")
    earliest_deadline_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(help_text="When the provider batch ended.")
    ingest_started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(help_text="When its last result was recorded.")
    client_batch = serializers.CharField(
        source="client_batch_id", allow_null=True, help_text="The /v1/batches batch it runs."
    )
    turnaround_seconds = serializers.SerializerMethodField()
    cancel_requested_at = serializers.DateTimeField()
    cancel_reason = serializers.CharField()
    last_error = serializers.CharField()

    def get_counts(self, job) -> dict:
        return {
            "total": job.item_count,
            "answered": job.answered,
            "provider_completed": job.provider_completed,
            "provider_failed": job.provider_failed,
            "succeeded": job.succeeded_count,
            "errored": job.errored_count,
            "unfinished": job.unfinished_count,
        }

    def get_progress(self, job) -> float:
        return round(job.answered / job.item_count, 4) if job.item_count else 0.0

    def get_turnaround_seconds(self, job) -> float | None:
        return job.turnaround.total_seconds() if job.turnaround else None


@extend_schema_serializer(component_name="BatchJobDetail")
class JobDetailOutputSerializer(JobOutputSerializer):
    cost = serializers.SerializerMethodField(
        help_text="USD, as decimal strings: what the job's items cost wherever they were "
        "finally served (`batch_cost_usd` in this batch, `elsewhere_cost_usd` escalated to "
        "realtime or in a later batch), what that would have cost realtime, the difference."
    )

    def get_cost(self, job) -> dict:
        totals = selectors.job_ledger(job)
        names = ("cost_usd", "batch_cost_usd", "elsewhere_cost_usd", "counterfactual_cost_usd")
        return {
            **{name: plain(totals[name]) for name in names},
            "saved_usd": plain(totals["saved_usd"]),
        }


class BatchJobListApi(generics.ListAPIView):
    serializer_class = JobOutputSerializer

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=BatchJob.Status.choices, required=False)
        lane = serializers.ChoiceField(choices=LatencyClass.choices, required=False)
        provider = serializers.SlugField(required=False)

    @extend_schema(parameters=[FilterSerializer], summary="Batch jobs, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        jobs = selectors.jobs_for(teams=teams_for(self.request.user))
        if provider := filters.validated_data.pop("provider", None):
            jobs = jobs.filter(provider__slug=provider)
        return jobs.filter(**filters.validated_data)


class BatchJobDetailApi(generics.RetrieveAPIView):
    serializer_class = JobDetailOutputSerializer

    def get_queryset(self):
        return selectors.jobs_for(teams=teams_for(self.request.user))


class BatchItemListApi(generics.ListAPIView):
    @extend_schema_serializer(component_name="BatchItem")
    class OutputSerializer(serializers.Serializer):
        custom_id = serializers.CharField()
        request = serializers.UUIDField(source="request_id")
        status = serializers.ChoiceField(choices=BatchItem.Status.choices)
        next_step = serializers.CharField()
        error = serializers.CharField()
        ended_at = serializers.DateTimeField()

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=BatchItem.Status.choices, required=False)

    serializer_class = OutputSerializer

    @extend_schema(parameters=[FilterSerializer], summary="A batch job's items")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        job = selectors.jobs_for(teams=teams_for(self.request.user)).filter(pk=self.kwargs["pk"])
        if not job.exists():
            raise Http404
        return BatchItem.objects.filter(job_id=self.kwargs["pk"], **filters.validated_data)


class BatchJobCancelApi(APIView):
    """Cancel a job: its provider batch is cancelled by a worker step enqueued now; what the
    provider finished first is kept and billed once; every other ticket ends `cancelled`, its
    hold released and its client told (websocket push, webhook), never served elsewhere as a
    side effect (202). A job that already ended, or whose cancel was already asked, is
    answered as it is with 409."""

    @extend_schema(
        request=None,
        responses={202: JobOutputSerializer, 409: JobOutputSerializer},
        summary="Cancel a batch job",
    )
    def post(self, request, pk):
        job = selectors.jobs_for(teams=teams_for(request.user)).filter(pk=pk).first()
        if job is None:
            raise Http404
        cancelled = services.batch_cancel(job=job)
        if cancelled:
            services.enqueue("batches.tasks.advance", job.pk)
        job.refresh_from_db()
        return Response(
            JobOutputSerializer(job).data,
            status=status.HTTP_202_ACCEPTED if cancelled else status.HTTP_409_CONFLICT,
        )


# --- the OpenAI-compatible batch surface: /v1/files and /v1/batches ----------------------
#
# For clients that batch themselves with the official openai SDK. Errors come in OpenAI's
# shape ({"error": {"message", "type", "param", "code"}}) so the SDK raises its usual
# exceptions; 409 is never used (the SDK retries it).


def openai_error(status_code: int, message: str, *, param: str = "", code: str = "") -> Response:
    return Response(
        openai.error_body(status_code, message, param=param, code=code), status=status_code
    )


def _unix(value) -> int | None:
    return int(value.timestamp()) if value else None


def file_json(stored: StoredFile) -> dict:
    return {
        "id": stored.id,
        "object": "file",
        "bytes": stored.bytes,
        "created_at": _unix(stored.created_at),
        "expires_at": _unix(stored.expires_at),
        "filename": stored.filename,
        "purpose": stored.purpose,
        "status": "processed",
        "status_details": None,
    }


def batch_json(batch: ClientBatch) -> dict:
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.input_file.model or None,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": _unix(batch.created_at),
        "in_progress_at": _unix(batch.in_progress_at),
        "expires_at": _unix(batch.expires_at),
        "finalizing_at": _unix(batch.finalizing_at),
        "completed_at": _unix(batch.completed_at),
        "failed_at": _unix(batch.failed_at),
        "expired_at": _unix(batch.expired_at),
        "cancelling_at": _unix(batch.cancelling_at),
        "cancelled_at": _unix(batch.cancelled_at),
        "request_counts": {
            "total": batch.total,
            "completed": batch.completed,
            "failed": batch.failed,
        },
        "metadata": batch.metadata or None,
        "workload": batch.workload.slug,
    }


def list_json(data: list[dict], has_more: bool) -> dict:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


class OpenAIView(APIView):
    """A key-authenticated view answering errors in OpenAI's shape."""

    content_negotiation_class = AnswerJsonWhateverAccept

    def handle_exception(self, exc):
        if isinstance(exc, services.SurfaceError):
            return openai_error(exc.status, exc.message, param=exc.param, code=exc.code)
        if isinstance(exc, Http404):
            return openai_error(404, str(exc) or "Not found.", code="not_found")
        if isinstance(exc, exceptions.APIException):
            code = exc.status_code
            detail = exc.detail
            if isinstance(detail, dict | list):
                param, message = first_error(detail)
                return openai_error(code, f"{param}: {message}" if param else message, param=param)
            # e.g. method_not_allowed, unsupported_media_type: what the SDK shows as e.code.
            return openai_error(code, str(detail), code=str(exc.get_codes()))
        return super().handle_exception(exc)

    def key(self) -> ApiKey:
        if not isinstance(self.request.user, KeyPrincipal):
            raise exceptions.NotAuthenticated("This API takes an API key: Authorization: Bearer.")
        return self.request.user.api_key

    def paged(self, queryset, to_json) -> Response:
        try:
            limit = int(self.request.query_params.get("limit", 20))
        except ValueError:
            raise services.SurfaceError(
                400, "limit must be a whole number", param="limit"
            ) from None
        if not 1 <= limit <= 100:
            raise services.SurfaceError(400, "limit must be between 1 and 100", param="limit")
        if after := self.request.query_params.get("after"):
            anchor = queryset.filter(pk=after).first()
            if anchor is None:
                raise services.SurfaceError(400, f"after: no such id {after!r}", param="after")
            queryset = queryset.filter(
                Q(created_at__lt=anchor.created_at)
                | Q(created_at=anchor.created_at, pk__lt=anchor.pk)
            )
        rows = list(queryset.order_by("-created_at", "-pk")[: limit + 1])
        return Response(list_json([to_json(r) for r in rows[:limit]], len(rows) > limit))


# How the OpenAI-compatible routes are documented: OpenAI's shapes, which the SDK reads.
_OPENAI = {"auth": [{"ApiKey": []}], "tags": ["OpenAI-compatible batches"]}
_PAGE = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 100 (default 20)."),
    OpenApiParameter("after", OpenApiTypes.STR, description="The last id of the page before."),
]
_OBJECT = {200: OpenApiTypes.OBJECT}


# An upload this large leaves daphne's freed memory with glibc unless it is handed back.
LARGE_UPLOAD_BYTES = 4 * 1024 * 1024


class FileCollectionApi(OpenAIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        **_OPENAI,
        request={
            "multipart/form-data": inline_serializer(
                "FileUpload",
                fields={
                    "file": serializers.FileField(help_text="The JSONL, one request per line."),
                    "purpose": serializers.ChoiceField(["batch"]),
                },
            )
        },
        responses=_OBJECT,
        summary="Upload a batch input file (files.create)",
        description="OpenAI's File object. The lines are checked as they arrive (JSON, "
        "`custom_id` unique, `method` POST, one `url` for the whole file: "
        "/v1/chat/completions, /v1/responses or /v1/embeddings, one model); a bad line is a "
        "400 naming it.",
    )
    def post(self, request):
        key = self.key()
        upload = request.FILES.get("file")
        if upload is None:
            raise services.SurfaceError(
                400, "Attach the JSONL as the multipart part 'file'.", param="file"
            )
        stored = services.file_store(
            team=key.team,
            filename=upload.name,
            purpose=request.data.get("purpose", ""),
            chunks=upload.chunks(),
        )
        if stored.bytes > LARGE_UPLOAD_BYTES:
            release_free_memory()  # the body daphne queued whole (llmops/memory.py)
        return Response(file_json(stored))

    @extend_schema(
        **_OPENAI,
        parameters=[*_PAGE, OpenApiParameter("purpose", OpenApiTypes.STR)],
        responses=_OBJECT,
        operation_id="v1_files_list",
        summary="The team's files, newest first (files.list)",
    )
    def get(self, request):
        files = StoredFile.objects.filter(team=self.key().team)
        if purpose := request.query_params.get("purpose"):
            files = files.filter(purpose=purpose)
        return self.paged(files, file_json)


def _file_of(view: OpenAIView, file_id: str) -> StoredFile:
    stored = StoredFile.objects.filter(pk=file_id, team=view.key().team).first()
    if stored is None:
        raise Http404(f"No such File object: {file_id}")
    return stored


class FileDetailApi(OpenAIView):
    @extend_schema(**_OPENAI, responses=_OBJECT, summary="A file (files.retrieve)")
    def get(self, request, file_id):
        return Response(file_json(_file_of(self, file_id)))


class FileContentApi(OpenAIView):
    @extend_schema(
        **_OPENAI,
        responses={(200, "application/jsonl"): OpenApiTypes.BINARY},
        summary="A file's bytes: an input file, or a batch's output or error file (files.content)",
    )
    def get(self, request, file_id):
        stored = _file_of(self, file_id)
        # Streamed from disk: a 200 MB file never sits in memory.
        return FileResponse(services.file_path(stored).open("rb"), content_type="application/jsonl")


class BatchCollectionApi(OpenAIView):
    class InputSerializer(serializers.Serializer):
        input_file_id = serializers.CharField(max_length=40)
        endpoint = serializers.CharField(max_length=100)
        completion_window = serializers.CharField(max_length=10)
        metadata = serializers.DictField(
            child=serializers.CharField(max_length=512, allow_blank=True),
            required=False,
            allow_null=True,
        )

        def validate_endpoint(self, value):
            if value not in jsonl.ENDPOINTS:
                raise serializers.ValidationError(
                    f"llmops batches {' and '.join(jsonl.ENDPOINTS)}, not {value!r}"
                )
            return value

        def validate_completion_window(self, value):
            if value != "24h":
                raise serializers.ValidationError("only '24h' is supported")
            return value

        def validate_metadata(self, value):
            if value and (len(value) > 16 or any(len(k) > 64 for k in value)):
                raise serializers.ValidationError("at most 16 pairs, keys of at most 64 chars")
            return value

    @extend_schema(
        **_OPENAI,
        request=InputSerializer,
        responses=_OBJECT,
        summary="Create a batch of an uploaded file (batches.create)",
        description="OpenAI's Batch object, at once in `validating`: a worker checks and "
        "admits the lines (the whole file's budget reserved at once), then provider batches "
        "answer them at the batch price. The workload is `X-Workload`, else the key's "
        "default; the lines' model is read as on /v1/chat/completions. `endpoint` must be "
        "the file's lines' url.",
    )
    def post(self, request):
        key = self.key()
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            workload = openai_workload(request, key)
        except RequestRejected as exc:
            raise services.SurfaceError(exc.status, exc.message, param=exc.field) from None
        stored = _file_of(self, data["input_file_id"])
        if stored.purpose != StoredFile.Purpose.BATCH:
            raise services.SurfaceError(
                400, f"{stored.id} is not a batch input file", param="input_file_id"
            )
        if stored.endpoint != data["endpoint"]:
            # OpenAI requires every line's url to be the batch's endpoint.
            raise services.SurfaceError(
                400,
                f"The lines of {stored.id} ask {stored.endpoint}, not {data['endpoint']}.",
                param="endpoint",
            )
        try:
            # Answers at once in `validating`, as OpenAI does: a worker checks and admits the
            # lines (a refusal, a budget's included, then fails the batch with `errors`).
            batch = client_batches.client_batch_create(
                api_key=key, workload=workload, input_file=stored, metadata=data.get("metadata")
            )
        except RequestRejected as exc:
            raise services.SurfaceError(
                exc.status, exc.message, param=exc.field, code=exc.code
            ) from None
        return Response(batch_json(batch))

    @extend_schema(
        **_OPENAI,
        parameters=_PAGE,
        responses=_OBJECT,
        operation_id="v1_batches_list",
        summary="The team's batches (batches.list)",
    )
    def get(self, request):
        batches = ClientBatch.objects.filter(team=self.key().team).select_related(
            "workload", "input_file"
        )
        return self.paged(batches, lambda b: batch_json(services.client_batch_refresh(batch=b)))


def _batch_of(view: OpenAIView, batch_id: str) -> ClientBatch:
    batch = (
        ClientBatch.objects.filter(pk=batch_id, team=view.key().team)
        .select_related("workload", "input_file")
        .first()
    )
    if batch is None:
        raise Http404(f"No such Batch object: {batch_id}")
    return batch


class BatchDetailApi(OpenAIView):
    @extend_schema(
        **_OPENAI,
        responses=_OBJECT,
        summary="A batch with its request_counts and, once ended, its output_file_id and "
        "error_file_id (batches.retrieve)",
    )
    def get(self, request, batch_id):
        return Response(batch_json(services.client_batch_refresh(batch=_batch_of(self, batch_id))))


class BatchCancelApi(OpenAIView):
    @extend_schema(
        **_OPENAI,
        request=None,
        responses=_OBJECT,
        summary="Cancel a batch (batches.cancel): `cancelling`, then `cancelled` with what the "
        "provider finished before the cancel in the output file, billed once",
    )
    def post(self, request, batch_id):
        batch = _batch_of(self, batch_id)
        if not client_batches.client_batch_cancel(batch=batch):
            # 400, not 409: the SDK retries a 409.
            raise services.SurfaceError(
                400, f"Batch {batch_id} has already ended ({batch.status}).", param="batch_id"
            )
        batch.refresh_from_db()
        return Response(batch_json(services.client_batch_refresh(batch=batch)))
