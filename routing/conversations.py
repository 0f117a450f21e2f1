"""Responses API conversations: the answers a client may name again (`previous_response_id`,
GET and DELETE /v1/responses/{id}), and the rule that a conversation continues on the provider
that holds it.

An OpenAI-protocol provider keeps its own responses: a continuation is relayed to it with the
client's `previous_response_id`, and llmops only needs to know which provider that is. A
Claude model keeps nothing: llmops rebuilds the earlier turns from its own records (each
turn's input items and output items, oldest first; `instructions` are not inherited, as
OpenAI's API does not inherit them)."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from routing.config import policy_chain
from routing.models import LlmModel, Request, StoredResponse, Team, Workload
from routing.protocols import anthropic_messages, openai_responses
from routing.providers.types import Completion

# How many earlier turns a rebuilt conversation may have: each is a row read per request.
MAX_TURNS = 500


def response_id(request: Request) -> str:
    """The id of a Response llmops renders for a request (a Claude model's; a relayed one
    keeps its provider's)."""
    return f"resp_{request.pk.hex}"


def message_id(request: Request) -> str:
    """The id of an Anthropic Message llmops renders for a request (an OpenAI model's answer,
    a cache hit; a relayed one keeps its provider's)."""
    return f"msg_{request.pk.hex}"


def recorded_answer(request: Request, completion: Completion) -> dict:
    """The answer a request records, in the protocol its client speaks: the provider's as it
    came, except a Responses request a Claude model answered (in chat's shape, realtime or in
    a batch), rendered as the Response the client asked for, and an Anthropic Messages request
    an OpenAI model answered, rendered as the Message (a Claude batch result is its own)."""
    answer = completion.answer
    kind = request.params.get("kind")
    if kind == "messages":
        if answer.get("type") == "message":
            return answer
        if completion.native.get("type") == "message":
            return completion.native
        return anthropic_messages.message_of(
            answer, usage=completion.usage, id=message_id(request), model=completion.model
        )
    if kind != "responses" or "choices" not in answer:
        return answer
    return openai_responses.response_of(
        answer,
        usage=completion.usage,
        id=response_id(request),
        created_at=int(request.created_at.timestamp()),
        model=completion.model,
        options=request.params.get("options") or {},
    )


class NotFound(LookupError):
    """No response of the team by that id (never stored, deleted, or another team's)."""


def stored_response(*, team: Team | int, response_id: str) -> StoredResponse:
    found = (
        StoredResponse.objects.select_related("request__model", "provider")
        .filter(team=team, response_id=response_id, deleted_at__isnull=True)
        .first()
    )
    if found is None:
        raise NotFound(response_id)
    return found


def continuing_model(
    workload: Workload, model: LlmModel | None, pinned: bool, stored: StoredResponse
) -> LlmModel | None:
    """The model that continues `stored`'s conversation for this ask: the client's pinned
    model if its provider holds the conversation, else the first usable model of the chain on
    that provider (pinned from then on: a fallback to another provider would lose the
    conversation). None when no model the ask may use is on that provider."""
    if pinned:
        return model if model is not None and model.provider_id == stored.provider_id else None
    return next(
        (
            m
            for m in policy_chain(workload.policy_id)
            if m.provider_id == stored.provider_id and m.enabled and m.provider.enabled
        ),
        None,
    )


def history_tokens(stored: StoredResponse) -> int:
    """The earlier conversation's size in tokens, as its last turn was billed (that turn's
    input held every earlier one): what a continuation adds to its prompt."""
    usage = stored.request.usage or {}
    return sum(
        usage.get(k) or 0
        for k in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens")
    )


def held_by_llmops(request: Request, chain: list[LlmModel]) -> str | None:
    """The `previous_response_id` whose conversation llmops must send along itself (a Claude
    or Gemini model serves the continuation: neither keeps Responses), else None."""
    if request.params.get("kind") != "responses" or not chain:
        return None  # on every request's path: one lookup for all but Responses
    previous = (request.params.get("options") or {}).get("previous_response_id")
    return previous if previous and not chain[0].provider.has_responses_api else None


def history(*, team_id: int, response_id: str) -> tuple[dict, ...]:
    """The conversation up to and including `response_id`, as Responses items, oldest first
    (for a model that keeps none)."""
    turns = []
    stored = stored_response(team=team_id, response_id=response_id)
    while stored is not None and len(turns) < MAX_TURNS:
        turns.append(stored.request)
        stored = (
            StoredResponse.objects.select_related("request").filter(pk=stored.previous_id).first()
            if stored.previous_id
            else None
        )
    items: list[dict] = []
    for request in reversed(turns):
        items.extend(openai_responses.items_of(request.params.get("options") or {}))
        items.extend((request.answer or {}).get("output") or ())
    return tuple(items)


def response_store(request: Request) -> StoredResponse | None:
    """Keep a completed Responses request's answer for the client to name again (unless it
    asked `store: false`). A cache hit or a replay repeats an answer already kept: nothing."""
    options = request.params.get("options") or {}
    answer = request.answer or {}
    if options.get("store") is False or not answer.get("id"):
        return None
    previous = None
    if previous_id := options.get("previous_response_id"):
        previous = StoredResponse.objects.filter(
            team_id=request.team_id, response_id=previous_id
        ).first()
    try:
        with transaction.atomic():
            return StoredResponse.objects.create(
                team_id=request.team_id,
                response_id=answer["id"],
                request=request,
                provider_id=request.model.provider_id,
                previous=previous,
            )
    except IntegrityError:
        return None  # kept already (the same answer served again from the cache)


def response_delete(*, team: Team | int, response_id: str) -> StoredResponse:
    """Forget a response: it can no longer be read or continued. Raises NotFound."""
    stored = stored_response(team=team, response_id=response_id)
    stored.deleted_at = timezone.now()
    stored.save(update_fields=["deleted_at"])
    return stored
