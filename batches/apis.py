"""Native REST API for batch jobs: list, detail, items, cancel. Scoped to the caller's teams;
another team's job is a 404."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import selectors, services
from batches.models import BatchItem, BatchJob
from routing.models import LatencyClass
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
    ended_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField()
    turnaround_seconds = serializers.SerializerMethodField()
    cancel_requested_at = serializers.DateTimeField()
    cancel_reason = serializers.CharField()
    last_error = serializers.CharField()

    def get_counts(self, job) -> dict:
        return {
            "total": job.item_count,
            "provider_completed": job.provider_completed,
            "provider_failed": job.provider_failed,
            "succeeded": job.succeeded_count,
            "errored": job.errored_count,
            "unfinished": job.unfinished_count,
        }

    def get_progress(self, job) -> float:
        if not job.item_count:
            return 0.0
        done = job.succeeded_count + job.errored_count + job.unfinished_count
        if not job.is_terminal:
            done = job.provider_completed + job.provider_failed
        return round(min(done, job.item_count) / job.item_count, 4)

    def get_turnaround_seconds(self, job) -> float | None:
        return job.turnaround.total_seconds() if job.turnaround else None


class JobDetailOutputSerializer(JobOutputSerializer):
    cost = serializers.SerializerMethodField()

    def get_cost(self, job) -> dict:
        totals = selectors.job_ledger(job)
        return {
            "cost_usd": str(totals["cost_usd"]),
            "counterfactual_cost_usd": str(totals["counterfactual_cost_usd"]),
            "saved_usd": str(totals["saved_usd"]),
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
    """Cancel a job: the provider batch is cancelled on the job's next step, what completed is
    kept and billed once, the rest is resubmitted or served realtime per policy (202). A job
    that already ended, or whose cancel was already asked, is answered as it is with 409."""

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
