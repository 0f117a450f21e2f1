"""Requests as clients read them back: GET /api/v1/requests/{id}, the websocket's `done` and
request pushes, and the pages' request views, all in one shape."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from routing import selectors
from routing.asks import answer_of
from routing.models import Request
from routing.protocols import anthropic_messages, openai_chat, openai_embeddings, openai_responses


class AttemptOutputSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    provider = serializers.CharField(source="model.provider.slug")
    model = serializers.CharField(source="model.model_id")
    service_tier = serializers.CharField(
        help_text="The provider tier asked for: flex, or empty for the provider's default."
    )
    outcome = serializers.CharField()
    error_kind = serializers.CharField()
    error = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField(allow_null=True)
    first_byte_ms = serializers.IntegerField(allow_null=True)


@extend_schema_serializer(component_name="Request")
class RequestOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    team = serializers.CharField(source="team.slug")
    workload = serializers.CharField(source="workload.slug")
    status = serializers.ChoiceField(choices=Request.Status.choices)
    mode = serializers.CharField(
        help_text="How it was served: realtime, stream, flex (now, at OpenAI's flex tier and "
        "price), batch, or cache."
    )
    source = serializers.CharField()
    provider = serializers.CharField(source="model.provider.slug", allow_null=True, default=None)
    model = serializers.CharField(source="model.model_id", allow_null=True, default=None)
    output = serializers.CharField()
    tool_calls = serializers.SerializerMethodField(
        help_text="The tools the answer calls, in OpenAI's shape ({id, type, function: {name, "
        "arguments}}): answer each with a `tool` message and send the conversation again."
    )
    finish_reason = serializers.CharField()
    kind = serializers.SerializerMethodField(
        help_text="chat, responses (asked through /v1/responses), messages (Anthropic's, "
        "through /v1/messages), or embeddings."
    )
    embeddings = serializers.SerializerMethodField(
        help_text="An embeddings request's vectors, in input order (floats, or base64 strings "
        "where the request asked for base64); null for a chat request or an unfinished one."
    )
    usage = serializers.JSONField()
    cost_usd = serializers.DecimalField(max_digits=24, decimal_places=12, allow_null=True)
    counterfactual_cost_usd = serializers.DecimalField(
        max_digits=24, decimal_places=12, allow_null=True
    )
    decision_reason = serializers.CharField()
    missed_saving = serializers.BooleanField()
    params = serializers.JSONField()
    metadata = serializers.JSONField()
    error = serializers.CharField()
    attempts = AttemptOutputSerializer(many=True)
    deadline_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField()
    first_token_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField()

    def get_tool_calls(self, request) -> list[dict]:
        kind = request.params.get("kind")
        if request.status != Request.Status.COMPLETED or kind == "embeddings":
            return []
        if kind == "responses":
            return openai_responses.tool_calls_of(request.answer)
        if kind == "messages":
            return anthropic_messages.tool_calls_of(request.answer)
        return openai_chat.tool_calls_of(answer_of(request))

    def get_kind(self, request) -> str:
        return request.params.get("kind", "chat")

    def get_embeddings(self, request) -> list | None:
        if request.params.get("kind") != "embeddings" or not request.answer:
            return None
        return openai_embeddings.vectors(request.answer)


def request_json(request: Request) -> dict:
    """The request as GET /api/v1/requests/{id} shows it (with its cost)."""
    return RequestOutputSerializer(selectors.request_with_cost(request)).data


def answered_json(request: Request) -> dict:
    """request_json of a request completed in this thread's unit just now (the native API's
    answer), read back only for what the unit did not hold: its cost and its attempts."""
    return RequestOutputSerializer(selectors.request_cost_attached(request)).data
