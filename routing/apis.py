"""Native REST API (read side for now). Every object is scoped to the caller's team."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from routing import selectors
from routing.auth import KeyPrincipal
from routing.models import LatencyClass, Request, Tier


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


@extend_schema_serializer(component_name="Request")
class RequestOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    team = serializers.CharField(source="team.slug")
    workload = serializers.CharField(source="workload.slug")
    status = serializers.ChoiceField(choices=Request.Status.choices)
    params = serializers.JSONField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField()
    first_token_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField()


class RequestListApi(generics.ListAPIView):
    serializer_class = RequestOutputSerializer

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
    serializer_class = RequestOutputSerializer
    lookup_field = "id"

    def get_queryset(self):
        return selectors.request_list(user=self.request.user)
