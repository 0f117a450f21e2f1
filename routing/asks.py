"""Requests as clients send them: the bodies of POST /api/v1/requests, /v1/chat/completions,
websocket `start` messages and batch-file lines, validated and turned into an `Ask`, and the
request object as clients read it back.

Every door (the HTTP APIs, the websocket consumers, the pages, client batches and the demo
history) reads requests through this module, so one body means one thing on each of them;
nothing here writes to the database."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.utils.functional import cached_property
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from llmops import limits, memo
from llmops.text import unstorable_text
from routing import conversations, selectors
from routing.config import default_workload, policy_chain
from routing.models import ApiKey, LlmModel, Request, Team, Workload
from routing.protocols import (
    anthropic_messages,
    gemini,
    openai_chat,
    openai_embeddings,
    openai_responses,
    translation,
)
from routing.providers.types import ChatRequest


class RequestRejected(Exception):
    """The request cannot be served as asked: an HTTP status, a message, the field at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str = "",
        code: str = "",
        item: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # seconds, for a 429: when trying again can succeed
        self.message = message
        self.field = field
        self.item = item  # which of several asks is refused
        self.code = code or {400: "invalid_request", 404: "not_found", 422: "conflict"}.get(
            status, "error"
        )


@dataclass(frozen=True)
class Ask:
    """A validated client request (the API's serializers build it)."""

    workload: Workload
    messages: list[dict]
    max_tokens: int | None
    temperature: float | None = None
    model: LlmModel | None = None  # the client's choice; must be in the policy's chain
    stream: bool = False
    metadata: dict = field(default_factory=dict)
    idempotency_key: str | None = None
    source: str = Request.Source.NATIVE
    # The model is the client's alone: no fallback replaces it (an OpenAI client named a model
    # other than its policy's primary or an alias).
    pinned: bool = False
    # Every other field of an OpenAI body, as sent (routing.protocols.openai_chat).
    options: dict = field(default_factory=dict)
    n: int = 1  # choices asked for: each is billed, so each is reserved for
    # What is asked (providers.types.ChatRequest.kind): "chat"; "embeddings", "responses" or
    # "messages" (Anthropic's), whose input is in `options` (no messages).
    kind: str = "chat"
    # A Responses continuation: the earlier conversation's tokens, which its prompt includes.
    history_tokens: int = 0
    # The client's protocol headers relayed with its body (message_asks.RELAYED_HEADERS).
    headers: dict = field(default_factory=dict)


def ask_body(ask: Ask) -> dict:
    """What identifies a request for idempotency (not the key itself, nor the transport)."""
    return {
        "workload": ask.workload.slug,
        "messages": ask.messages,
        "max_tokens": ask.max_tokens,
        "temperature": ask.temperature,
        "model": ask.model.model_id if ask.model else None,
        "stream": ask.stream,
        "metadata": ask.metadata,
        **({"options": ask.options} if ask.options else {}),
        **({"n": ask.n} if ask.n != 1 else {}),
        **({"pinned": True} if ask.pinned else {}),
        **({"kind": ask.kind} if ask.kind != "chat" else {}),
        **({"history_tokens": ask.history_tokens} if ask.history_tokens else {}),
        **({"headers": ask.headers} if ask.headers else {}),
    }


def ask_params(ask: Ask, *, max_tokens: int) -> dict:
    """What a request row keeps of the ask in `params`: the body without its metadata, which
    has a column of its own (it was stored twice), with the max_tokens applied."""
    params = ask_body(ask)
    del params["metadata"]
    options = params.get("options") or {}
    if isinstance(options.get("metadata"), dict):
        # An OpenAI body's metadata is relayed too: its values are in the metadata column
        # already, so only its keys are kept here (chat_request puts it back together).
        params["options"] = {k: v for k, v in options.items() if k != "metadata"}
        params["metadata_keys"] = sorted(options["metadata"])
    return {**params, "max_tokens": max_tokens}


class StrictInteger(serializers.IntegerField):
    """An integer that is a JSON integer: not "5", not 5.0, not true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictNumber(serializers.FloatField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBoolean(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class InputSerializer(serializers.Serializer):
    """A request body's serializer whose fields are made and bound once per class, not
    deep-copied for every instance as DRF does (~0.2 ms of every API call, most of its
    validation). They are bound to a template instance that holds no data and no context;
    validating keeps no state in a field, so every instance, in any thread, can share them.
    For bodies validated without context or `partial` only (the serving path's)."""

    @cached_property
    def fields(self):
        cls = type(self)
        template = cls.__dict__.get("_template")
        if template is None:
            template = cls()
            # The template's own fields, made and bound as DRF makes them.
            template.__dict__["fields"] = serializers.Serializer.fields.func(template)
            cls._template = template  # two threads racing here each make one: either serves
        return template.fields


ROLES = ("system", "developer", "user", "assistant", "tool")


MAX_MESSAGES = 1_000


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {"type": {"enum": ["text"]}, "text": {"type": "string"}},
                    "required": ["type", "text"],
                },
            },
        ]
    }
)
class MessageContentField(serializers.JSONField):
    """Documented as what validate_content takes (a bare JSONField reads as "any value")."""


class MessageSerializer(InputSerializer):
    role = serializers.ChoiceField(choices=ROLES)
    content = MessageContentField(allow_null=True)
    # A tool-calling conversation's turns, in OpenAI's shape: the assistant's calls, and each
    # `tool` message's answer to one of them.
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False)
    tool_call_id = serializers.CharField(max_length=200, required=False)

    def validate(self, attrs):
        if attrs.get("content") is None and not (
            attrs["role"] == "assistant" and attrs.get("tool_calls")
        ):
            raise ValidationError({"content": ["Required (null only beside tool_calls)."]})
        if attrs["role"] == "tool" and not attrs.get("tool_call_id"):
            raise ValidationError({"tool_call_id": ["A tool message answers a tool call."]})
        return attrs

    def validate_content(self, value):
        if value is None:
            return None
        # A string, or OpenAI's list of text parts; other part types (images, audio) are not
        # routed by llmops yet, so they are refused rather than silently dropped.
        if isinstance(value, str):
            return value
        if (
            isinstance(value, list)
            and value
            and all(
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                for p in value
            )
        ):
            return value
        raise ValidationError("Must be a string or a list of {type: text, text: string} parts.")


class MessagesField(serializers.ListField):
    child = MessageSerializer()

    def __init__(self, **kwargs):
        super().__init__(min_length=1, max_length=MAX_MESSAGES, **kwargs)


class StopField(serializers.JSONField):
    def to_internal_value(self, data):
        if data is None or isinstance(data, str):
            return data
        if isinstance(data, list) and len(data) <= 4 and all(isinstance(s, str) for s in data):
            return data
        raise ValidationError("Must be a string or a list of at most 4 strings.")


class RequestInputSerializer(InputSerializer):
    workload = serializers.SlugField()
    messages = MessagesField()
    max_tokens = StrictInteger(min_value=1, required=False)
    temperature = StrictNumber(min_value=0, max_value=2, required=False, allow_null=True)
    model = serializers.CharField(max_length=200, required=False)
    stream = StrictBoolean(required=False, default=False)
    metadata = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(required=False)
    # OpenAI's shapes, passed to the model as they are (translated for a Claude model).
    tools = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        max_length=512,
        help_text="OpenAI function tools: [{type: function, function: {name, parameters}}].",
    )
    tool_choice = serializers.JSONField(
        required=False, help_text="none | auto | required | {type: function, function: {name}}."
    )
    response_format = serializers.DictField(
        required=False, help_text="{type: json_object} or {type: json_schema, json_schema}."
    )
    stop = StopField(required=False, help_text="A string or up to 4 strings.")

    def validate_metadata(self, value):
        return checked_metadata(value)

    def validate_idempotency_key(self, value):
        if len(value) > settings.LLMOPS_MAX_KEY_HEADER_CHARS:
            raise ValidationError(
                f"At most {settings.LLMOPS_MAX_KEY_HEADER_CHARS} characters (as the header)."
            )
        return value


def checked_metadata(value):
    """`metadata` within the limits every path shares (llmops.limits), as a field error."""
    try:
        limits.check_metadata(value, field="metadata")
    except limits.Refused as exc:
        raise ValidationError(exc.message.removeprefix("metadata: ")) from None
    return value


OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


@extend_schema_field(
    {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {
                "role": {"enum": list(OPENAI_ROLES)},
                "content": {
                    # OpenAPI 3.0 has no null type: `nullable` says it.
                    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
                    "nullable": True,
                },
                "tool_calls": {"type": "array", "items": {"type": "object"}},
                "tool_call_id": {"type": "string"},
            },
            "required": ["role"],
        },
    }
)
class OpenAIMessagesField(serializers.JSONField):
    """OpenAI's messages, checked for what llmops reads (roles, content, parts' types) and
    otherwise kept as sent: tool calls, tool results, names and unknown keys pass through."""

    def to_internal_value(self, data):
        for index, message in checked_turns(data, roles=OPENAI_ROLES):
            content = message.get("content")
            if content is None:
                if message["role"] == "assistant" and (
                    message.get("tool_calls") or message.get("function_call")
                ):
                    continue
                raise ValidationError({index: {"content": ["This field is required."]}})
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise ValidationError(
                    {index: {"content": ["Must be a string or a list of parts."]}}
                )
            for position, part in enumerate(content):
                check_typed(part, index, position)
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise ValidationError(
                        {index: {"content": {position: ["A text part needs a string `text`."]}}}
                    )
        return data


def checked_turns(data, *, roles: tuple[str, ...]):
    """(index, turn) of a messages list, checked for what every protocol's share (OpenAI's
    messages, Anthropic's turns): a list of 1 to MAX_MESSAGES objects, each with a role of
    `roles`. Raises ValidationError naming the turn."""
    if not isinstance(data, list):
        raise ValidationError("Expected a list of messages.")
    if not 1 <= len(data) <= MAX_MESSAGES:
        raise ValidationError(f"Between 1 and {MAX_MESSAGES} messages.")
    for index, message in enumerate(data):
        if not isinstance(message, dict):
            raise ValidationError({index: ["Must be an object."]})
        if message.get("role") not in roles:
            raise ValidationError({index: {"role": [f"Must be one of {', '.join(roles)}."]}})
        yield index, message


def check_typed(part, index: int, position: int) -> None:
    """A content part (OpenAI's) or block (Anthropic's): an object with a string `type`."""
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise ValidationError(
            {index: {"content": {position: ["Must be an object with a `type`."]}}}
        )


class ChatCompletionInputSerializer(InputSerializer):
    """OpenAI's chat.completions body. llmops checks what it routes and bills on; every other
    field (tools, tool_choice, response_format, seed, logprobs, ... and any it does not know)
    is relayed as sent, in `options`. The provider checks those; its 400 reaches the client."""

    model = serializers.CharField(max_length=200)
    messages = OpenAIMessagesField()
    max_tokens = StrictInteger(min_value=1, required=False, allow_null=True)
    max_completion_tokens = StrictInteger(min_value=1, required=False, allow_null=True)
    temperature = StrictNumber(min_value=0, max_value=2, required=False, allow_null=True)
    top_p = StrictNumber(min_value=0, max_value=1, required=False, allow_null=True)
    n = StrictInteger(min_value=1, max_value=128, required=False, allow_null=True)
    stream = StrictBoolean(required=False, default=False)
    stream_options = serializers.DictField(required=False, allow_null=True)
    stop = StopField(required=False, allow_null=True)
    tools = serializers.ListField(
        child=serializers.DictField(), required=False, allow_null=True, max_length=512
    )
    response_format = serializers.DictField(required=False, allow_null=True)
    user = serializers.CharField(max_length=200, required=False)
    metadata = serializers.DictField(required=False, allow_null=True)

    def validate_metadata(self, value):
        return checked_metadata(value)

    def validate(self, attrs):
        if attrs.get("stream_options") is not None and not attrs.get("stream"):
            raise ValidationError(
                {"stream_options": ["Only allowed when `stream` is true (as OpenAI's API)."]}
            )
        return attrs

    def to_internal_value(self, data):
        validated = super().to_internal_value(data)
        # What was checked is relayed as sent, with every field the serializer does not name.
        validated["options"] = openai_chat.options_of(data)
        return validated


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"type": "array", "items": {"type": "integer"}},
            {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        ]
    }
)
class EmbeddingInputField(serializers.Field):
    """OpenAI's embeddings `input`, checked as OpenAI checks it (openai_embeddings.inputs_of)."""

    def to_internal_value(self, data):
        try:
            openai_embeddings.inputs_of(data)
        except openai_embeddings.InputError as exc:
            raise ValidationError(f"Invalid 'input': {exc}.") from None
        return data

    def to_representation(self, value):
        return value


class NativeEmbeddingsInputSerializer(InputSerializer):
    """POST /api/v1/embeddings: a workload's embeddings, answered now or deferred to a batch
    as the workload's policy decides."""

    workload = serializers.SlugField()
    team = serializers.SlugField(required=False)
    input = EmbeddingInputField(help_text="A string, strings, a token array or token arrays.")
    model = serializers.CharField(max_length=200, required=False)
    dimensions = StrictInteger(min_value=1, required=False)
    encoding_format = serializers.ChoiceField(["float", "base64"], required=False)
    metadata = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(required=False)

    validate_metadata = RequestInputSerializer.validate_metadata
    validate_idempotency_key = RequestInputSerializer.validate_idempotency_key


class EmbeddingsInputSerializer(InputSerializer):
    """OpenAI's embeddings body: the model and input read, every field relayed as sent."""

    model = serializers.CharField(max_length=200)
    input = EmbeddingInputField()
    encoding_format = serializers.ChoiceField(["float", "base64"], required=False)
    dimensions = StrictInteger(min_value=1, required=False)
    user = serializers.CharField(max_length=200, required=False)

    def to_internal_value(self, data):
        validated = super().to_internal_value(data)
        validated["options"] = openai_embeddings.options_of(data)
        return validated


def embeddings_ask(
    workload: Workload,
    data: dict,
    *,
    source: str,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
) -> Ask:
    """An Ask from a validated embeddings body (EmbeddingsInputSerializer): no messages and
    no output, the input (and every other field) in options. The model is the client's."""
    model, pinned = openai_model(workload, data["model"], kind=LlmModel.Kind.EMBEDDING)
    return Ask(
        workload=workload,
        messages=[],
        max_tokens=0,
        model=model,
        pinned=pinned,
        metadata=dict(metadata or {}),
        idempotency_key=idempotency_key,
        source=source,
        options=data["options"],
        kind="embeddings",
    )


class ResponsesInputSerializer(InputSerializer):
    """OpenAI's Responses body (provider-contract §10): llmops checks what it routes, bounds and
    bills on; every other field is relayed as sent (translated for a Claude model, where what
    cannot be honoured is a 400 naming it)."""

    model = serializers.CharField(max_length=200)
    input = serializers.JSONField(help_text="A string, or a list of input items.")
    instructions = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    max_output_tokens = StrictInteger(min_value=16, required=False, allow_null=True)
    temperature = StrictNumber(min_value=0, max_value=2, required=False, allow_null=True)
    top_p = StrictNumber(min_value=0, max_value=1, required=False, allow_null=True)
    stream = StrictBoolean(required=False, default=False)
    store = StrictBoolean(required=False, allow_null=True)
    background = StrictBoolean(required=False, allow_null=True)
    previous_response_id = serializers.CharField(max_length=200, required=False, allow_null=True)
    tools = serializers.ListField(
        child=serializers.DictField(), required=False, allow_null=True, max_length=512
    )
    metadata = serializers.DictField(required=False, allow_null=True)

    def validate_input(self, value):
        if isinstance(value, str) and value:
            return value
        if not isinstance(value, list) or not value:
            raise ValidationError("Must be a non-empty string or a non-empty list of items.")
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise ValidationError({index: ["Must be an object (an input item)."]})
        return value

    def validate_background(self, value):
        if value:
            # Background responses outlive the call that made them; llmops bills and answers
            # each request within its call (a deferrable workload goes to /api/v1 or a batch).
            raise ValidationError("Background responses are not served by llmops.")
        return value

    def validate_metadata(self, value):
        return checked_metadata(value)

    def to_internal_value(self, data):
        validated = super().to_internal_value(data)
        validated["options"] = openai_responses.options_of(data)
        return validated


def responses_ask(
    workload: Workload,
    data: dict,
    *,
    source: str,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
) -> Ask:
    """An Ask from a validated Responses body. The model is the client's (openai_model); a
    continuation (`previous_response_id`) is served by the provider that holds the
    conversation, and its earlier turns count in the prompt's bound."""
    model, pinned = openai_model(workload, data["model"], kind=LlmModel.Kind.CHAT)
    options = data["options"]
    history = 0
    if previous := data.get("previous_response_id"):
        try:
            stored = conversations.stored_response(team=workload.team, response_id=previous)
        except conversations.NotFound:
            raise RequestRejected(
                400,
                f"Previous response with id '{previous}' not found.",
                field="previous_response_id",
                code="previous_response_not_found",
            ) from None
        continuing = conversations.continuing_model(workload, model, pinned, stored)
        if continuing is None:
            raise RequestRejected(
                400,
                f"previous_response_id {previous} was answered by {stored.provider.name}, "
                f"which holds that conversation; {data['model']} is not served there. Name a "
                f"model of {stored.provider.name}, or send the whole conversation as `input`.",
                field="previous_response_id",
                code="previous_response_elsewhere",
            )
        model, pinned = continuing, True
        history = conversations.history_tokens(stored)
    return Ask(
        workload=workload,
        messages=[],
        max_tokens=data.get("max_output_tokens"),
        model=model,
        pinned=pinned,
        stream=data.get("stream", False),
        metadata={**(metadata or {}), **(data.get("metadata") or {})},
        idempotency_key=idempotency_key,
        source=source,
        options=options,
        kind="responses",
        history_tokens=history,
    )


def first_error(errors) -> tuple[str, str]:
    """(field, message) of a DRF error tree, e.g. ('messages.0.role', '"x" is not...')."""
    path = []
    while isinstance(errors, dict | list):
        if isinstance(errors, dict):
            key = next(iter(errors))
            path.append(str(key))
            errors = errors[key]
        else:
            errors = errors[0] if errors else "invalid"
    return ".".join(p for p in path if p != "non_field_errors"), str(errors)


def json_object(
    raw: bytes | str, *, what: str = "The body", not_object: str = "The body must be a JSON object."
) -> dict:
    """A body or a socket message (`what`), parsed strictly (llmops.limits): a JSON object
    whose text every database can store. Raises RequestRejected naming the field at fault."""
    try:
        body = limits.loads(raw or b"null")
    except limits.Refused as exc:
        raise RequestRejected(
            exc.status, exc.message.replace("The body", what), field=exc.field
        ) from None
    if not isinstance(body, dict):
        raise RequestRejected(400, not_object)
    if (path := unstorable_text(body)) is not None:
        # PostgreSQL refuses NUL in text and JSON; a lone surrogate is not UTF-8 at all.
        raise RequestRejected(
            400,
            f"{path or 'body'}: contains a NUL character or an unpaired surrogate.",
            field=path,
        )
    return body


def team_workload(team_id: int, slug: str) -> Workload | None:
    """A team's enabled workload by slug: read on every API call and changed rarely, so
    memoized (llmops.memo drops it on any save of a workload or its policy). An unknown slug
    is not: a client naming new ones would grow the memo without end."""
    return memo.memoized(
        ("workload", team_id, slug),
        lambda: (
            Workload.objects.filter(team_id=team_id, slug=slug, enabled=True)
            .select_related("team", "policy")
            .first()
        ),
        keep=lambda workload: workload is not None,
    )


def openai_workload(http_request, key: ApiKey) -> Workload:
    """The workload an OpenAI-compatible call bills: its X-Workload header, else the key's
    default. Raises RequestRejected naming the header."""
    slug = http_request.headers.get("X-Workload") or ""
    workload = team_workload(key.team_id, slug) if slug else default_workload(key)
    if workload is None:
        raise RequestRejected(
            404 if slug else 400,
            f"Unknown workload {slug!r}."
            if slug
            else "Name a workload in the X-Workload header (this key has no default).",
            field="X-Workload",
        )
    return workload


def openai_ask(
    workload: Workload,
    data: dict,
    *,
    source: str,
    idempotency_key: str | None = None,
    metadata: dict | None = None,
) -> Ask:
    """An Ask from a validated chat.completions body (ChatCompletionInputSerializer). The model
    is the client's (openai_model)."""
    model, pinned = openai_model(workload, data["model"], kind=LlmModel.Kind.CHAT)
    return Ask(
        workload=workload,
        messages=data["messages"],
        max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
        temperature=data.get("temperature"),
        model=model,
        pinned=pinned,
        stream=data.get("stream", False),
        metadata={**(metadata or {}), **(data.get("metadata") or {})},
        idempotency_key=idempotency_key,
        source=source,
        options=data.get("options") or {},
        n=data.get("n") or 1,
    )


def openai_model(
    workload: Workload, name: str, *, kind: str | None = None
) -> tuple[LlmModel | None, bool]:
    """What an OpenAI client's `model` means for a workload: (the model, pinned). An alias of
    the policy, or its primary, is the chain with its fallbacks; another model of the chain,
    or any enabled model where the policy allows any, is that model alone. Raises
    RequestRejected: 404 model_not_found for a model llmops does not know, 400 naming the
    allowed models for one the policy does not allow, 400 for a model of another `kind` than
    the surface serves (a chat model on /v1/embeddings)."""
    policy = workload.policy
    chain = policy_chain(policy.pk)
    if name in policy.aliases:
        _check_kind(workload, next(iter(chain), None), kind)
        return None, False
    # An Azure deployment's name means its model too: clients moving from Azure keep theirs.
    named = next((m for m in chain if name in (m.model_id, m.deployment)), None)
    if named is not None:
        _check_kind(workload, named, kind)
        primary = next((m for m in chain if m.enabled and m.provider.enabled), None)
        return named, named is not primary
    known = selectors.model_named(name)
    if known is None:
        raise RequestRejected(
            404,
            f"The model `{name}` does not exist or you do not have access to it.",
            field="model",
            code="model_not_found",
        )
    if policy.allow_any_model:
        _check_kind(workload, known, kind)
        return known, True
    allowed = sorted(policy.aliases) + [m.model_id for m in chain if m.enabled]
    raise RequestRejected(
        400,
        f"Model {name!r} is not allowed for workload {workload.slug}: use one of "
        f"{', '.join(allowed)}.",
        field="model",
        code="model_not_allowed",
    )


def _check_kind(workload: Workload, model: LlmModel | None, kind: str | None) -> None:
    if kind is None or model is None or model.kind == kind:
        return
    raise RequestRejected(
        400,
        f"{model.model_id} (workload {workload.slug}) is a {model.kind} model: call "
        f"{model.endpoint} with it, or name a {kind} model here.",
        field="model",
        code="wrong_model_kind",
    )


def chain_model(workload: Workload, model_id: str | None):
    """The model of the workload's chain called `model_id`, or None (the chain is memoized, so
    a batch file's lines do not query it each)."""
    if not model_id:
        return None
    return next((m for m in policy_chain(workload.policy_id) if m.model_id == model_id), None)


def native_ask(
    *,
    workloads,
    data: dict,
    idempotency_key: str | None = None,
    source: str = Request.Source.NATIVE,
) -> Ask:
    """An Ask from a validated native body (REST or websocket). `workloads` are the ones the
    caller may use (a queryset, or an API key's Team: its workloads, memoized); a slug several
    of a session user's teams share needs `team`."""
    workload, model = _native_target(workloads, data, kind=LlmModel.Kind.CHAT)
    return Ask(
        workload=workload,
        messages=data["messages"],
        max_tokens=data.get("max_tokens"),
        temperature=data.get("temperature"),
        model=model,
        stream=data.get("stream", False),
        metadata=data.get("metadata") or {},
        idempotency_key=idempotency_key,
        source=source,
        options={key: data[key] for key in NATIVE_OPTIONS if data.get(key) is not None},
    )


def native_embeddings_ask(
    *,
    workloads,
    data: dict,
    idempotency_key: str | None = None,
    source: str = Request.Source.NATIVE,
) -> Ask:
    """An Ask from a validated native embeddings body (NativeEmbeddingsInputSerializer)."""
    workload, model = _native_target(workloads, data, kind=LlmModel.Kind.EMBEDDING)
    return Ask(
        workload=workload,
        messages=[],
        max_tokens=0,
        model=model,
        metadata=data.get("metadata") or {},
        idempotency_key=idempotency_key,
        source=source,
        options={k: data[k] for k in NATIVE_EMBEDDING_OPTIONS if data.get(k) is not None},
        kind="embeddings",
    )


# The native embeddings body's fields that are OpenAI's own, relayed to the model.
NATIVE_EMBEDDING_OPTIONS = ("input", "dimensions", "encoding_format")


def _native_target(workloads, data: dict, *, kind: str) -> tuple[Workload, LlmModel | None]:
    """The workload a native body names (one the caller may use) and the model of its chain
    the body names, if any, of the `kind` the surface serves."""
    slug = data["workload"]
    team_slug = data.get("team")
    if isinstance(workloads, Team):  # an API key's: its one team's
        workload = team_workload(workloads.pk, slug)
        found = [workload] if workload and team_slug in (None, "", workloads.slug) else []
    else:
        matches = workloads.filter(slug=slug, enabled=True).select_related("team", "policy")
        if team_slug:
            matches = matches.filter(team__slug=team_slug)
        found = list(matches[:2])
    if not found:
        raise RequestRejected(404, f"Unknown workload {slug!r}.", field="workload")
    if len(found) > 1:
        raise RequestRejected(
            400,
            f"Several of your teams have a workload {slug!r}: name one with `team`.",
            field="team",
        )
    workload = found[0]
    model = chain_model(workload, data.get("model"))
    if data.get("model") and model is None:
        chain = [m.model_id for m in policy_chain(workload.policy_id)]
        raise RequestRejected(
            400,
            f"Model {data['model']!r} is not in workload {workload.slug}'s chain "
            f"({', '.join(chain)}).",
            field="model",
        )
    _check_kind(workload, model or next(iter(policy_chain(workload.policy_id)), None), kind)
    return workload, model


# The native body's fields that are OpenAI's own, carried to the model as options.
NATIVE_OPTIONS = ("tools", "tool_choice", "response_format", "stop")


def answer_of(request: Request) -> dict:
    """A completed request's whole answer (openai_chat's shape); a request recorded before
    answers were kept has its text only."""
    if request.answer:
        return request.answer
    return openai_chat.text_answer(
        request.output,
        finish_reason=request.finish_reason or "stop",
        model=request.model.model_id if request.model_id else "",
    )


# Where an OpenAI client's own body is the request (relayed with the limit it set, or none).
OPENAI_BODY_SOURCES = frozenset(
    {Request.Source.OPENAI, Request.Source.ANTHROPIC, Request.Source.BATCH_API}
)


def chat_request(request: Request, model: LlmModel | None = None) -> ChatRequest:
    """What a provider is sent for a request row (realtime or as a batch line): its messages
    and every option as the client sent them, for `model` (set per attempt if None)."""
    params = request.params
    options = params.get("options") or {}
    if (keys := params.get("metadata_keys")) is not None:
        options = {**options, "metadata": {k: request.metadata.get(k) for k in keys}}
    return ChatRequest(
        model=model.upstream_id if model else "",
        messages=params["messages"],
        max_tokens=params["max_tokens"],
        temperature=params.get("temperature"),
        options=options,
        send_max_tokens=request.source not in OPENAI_BODY_SOURCES,
        kind=params.get("kind", "chat"),
        headers=params.get("headers") or {},
    )


def refused_param(model: LlmModel, params: dict) -> str | None:
    """The first parameter of a request (its params) `model` cannot honour — its provider
    speaks another protocol and the parameter does not translate —, or None."""
    options = params.get("options") or {}
    provider = model.provider
    kind = params.get("kind")
    if kind == "embeddings" or (kind == "responses" and provider.has_responses_api):
        return None
    try:
        if kind == "messages":  # Anthropic's own body: translated for every other provider
            if provider.kind == "anthropic":
                return None
            messages, options = anthropic_messages.chat_of(options)
        elif kind == "responses":  # translated through its chat form
            messages, options = openai_responses.chat_of(options)
            if provider.kind == "anthropic":
                return None
        else:
            messages = params["messages"]
    except (anthropic_messages.Untranslatable, openai_responses.Untranslatable) as exc:
        return exc.param
    if provider.kind == "anthropic":
        return translation.anthropic_refuses(options=options, messages=messages)
    if provider.kind == "gemini":
        # Its OpenAI-compatible API ignores some of OpenAI's parameters; its batch mode takes
        # Gemini's own requests: one rule for both, so a request is refused (or a chain falls
        # back) the same way whichever lane serves it.
        return gemini.gemini_refuses(options=options, messages=messages)
    return None
