"""Anthropic Messages bodies as clients send them (the anthropic SDK, Claude Code, a batch's
`params`): validated for what llmops routes, bounds and bills on, and turned into an `Ask`
whose options hold the rest of the body as sent (relayed to a Claude model, translated for an
OpenAI one by routing.protocols.anthropic_messages)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from routing.asks import (
    Ask,
    InputSerializer,
    StrictBoolean,
    StrictInteger,
    StrictNumber,
    check_typed,
    checked_metadata,
    checked_turns,
    openai_model,
)
from routing.models import LlmModel, Workload
from routing.protocols import anthropic_messages

# The request headers of Anthropic's protocol relayed with the body: the API version the
# client speaks and its beta flags (never checked here: an unknown flag is the provider's).
RELAYED_HEADERS = ("anthropic-version", "anthropic-beta")
# The turns' roles: Claude Code also sends `system` turns among the others (a reminder
# mid-conversation), which Claude reads and chat has too.
ROLES = ("user", "assistant", "system")


def relayed_headers(http_request) -> dict:
    return {h: v for h in RELAYED_HEADERS if (v := http_request.headers.get(h))}


@extend_schema_field(
    {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {
                "role": {"enum": ["user", "assistant", "system"]},
                "content": {
                    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]
                },
            },
            "required": ["role", "content"],
        },
    }
)
class AnthropicMessagesField(serializers.JSONField):
    """Anthropic's turns, checked for what llmops reads (roles, content and its blocks' types)
    and otherwise kept as sent: tool_use, tool_result, images, thinking, cache_control."""

    def to_internal_value(self, data):
        for index, message in checked_turns(data, roles=ROLES):
            content = message.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise ValidationError(
                    {index: {"content": ["Input should be a string or a list of blocks."]}}
                )
            for position, block in enumerate(content):
                check_typed(block, index, position)
        return data


class SystemField(serializers.JSONField):
    def to_internal_value(self, data):
        if isinstance(data, str):
            return data
        if isinstance(data, list) and all(
            isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
            for b in data
        ):
            return data
        raise ValidationError("Input should be a string or a list of text blocks.")


class MessagesInputSerializer(InputSerializer):
    """Anthropic's Messages body (provider-contract §3, §11): llmops checks what it routes,
    bounds and bills on; every other field (tools, tool_choice, thinking, output_config,
    cache_control, metadata and any it does not know) is relayed as sent, in `options`."""

    model = serializers.CharField(max_length=200)
    max_tokens = StrictInteger(min_value=1)
    messages = AnthropicMessagesField()
    system = SystemField(required=False)
    stream = StrictBoolean(required=False, default=False)
    temperature = StrictNumber(min_value=0, max_value=1, required=False)
    top_p = StrictNumber(min_value=0, max_value=1, required=False)
    top_k = StrictInteger(min_value=0, required=False)
    stop_sequences = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False
    )
    tools = serializers.ListField(child=serializers.DictField(), required=False, max_length=512)
    tool_choice = serializers.DictField(required=False)
    thinking = serializers.DictField(required=False)
    metadata = serializers.DictField(required=False)

    def validate_metadata(self, value):
        return checked_metadata(value)

    def to_internal_value(self, data):
        validated = super().to_internal_value(data)
        validated["options"] = anthropic_messages.options_of(data)
        return validated


class CountTokensInputSerializer(MessagesInputSerializer):
    """POST /v1/messages/count_tokens: a Messages body without max_tokens."""

    max_tokens = StrictInteger(min_value=1, required=False)


def messages_ask(
    workload: Workload,
    data: dict,
    *,
    source: str,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
    headers: dict | None = None,
) -> Ask:
    """An Ask from a validated Messages body. The model is the client's (asks.openai_model:
    an alias or the policy's primary is the chain, another model of it that model alone)."""
    model, pinned = openai_model(workload, data["model"], kind=LlmModel.Kind.CHAT)
    return Ask(
        workload=workload,
        messages=[],
        max_tokens=data["max_tokens"],
        model=model,
        pinned=pinned,
        stream=data.get("stream", False),
        metadata={**(metadata or {}), **(data.get("metadata") or {})},
        idempotency_key=idempotency_key,
        source=source,
        options=data["options"],
        kind="messages",
        headers=dict(headers or {}),
    )
