"""The response cache: answers kept in Django's cache (a file cache on one machine, Redis when
scaled out), so every process shares them and entries expire by themselves; a hit is answered
at no cost, its ledger entry keeping the counterfactual of serving it for real."""

from __future__ import annotations

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from billing.pricing import Usage
from billing.services import ledger_record_usage
from routing import conversations, metrics
from routing.events import request_changed, request_touch
from routing.models import LlmModel, Mode, Request, RoutingPolicy
from routing.protocols import openai_chat

# Bumped whenever what goes into a key changes: entries keyed the old way are never read again
# (they expire by their TTL). v2: every role counts in user_and_system_hash (in v1 a
# developer message steered an answer another key was then served for the user message alone).
# v3: every field of an OpenAI body that can change the answer counts (tools, response_format,
# stop, seed, n, top_p, penalties, logprobs, content parts): in v2 a request differing only in
# them was served another's answer.
CACHE_KEY_VERSION = "v3"


# The messages that instruct rather than converse; user_and_system_hash hashes them apart.
INSTRUCTION_ROLES = ("system", "developer")


def cache_key(policy: RoutingPolicy, params: dict) -> str:
    """Everything that can change the answer, in every mode: each message whatever its role
    (system, developer, user, assistant, tool) and its parts, in order, the model asked for,
    max_tokens, temperature, and every field of the client's body but those that only tag or
    transport the call (openai_chat.answer_material)."""
    messages = params["messages"]
    if policy.cache_key == RoutingPolicy.CacheKey.USER_AND_SYSTEM_HASH:
        instructions = [m for m in messages if m.get("role") in INSTRUCTION_ROLES]
        material = {
            "instructions": Request.hash_body({"instructions": instructions}),
            "conversation": [m for m in messages if m.get("role") not in INSTRUCTION_ROLES],
        }
    else:
        material = {"messages": messages}
    material.update(
        model=params.get("model"),
        max_tokens=params.get("max_tokens"),
        temperature=params.get("temperature"),
        options=openai_chat.answer_material(params.get("options") or {}),
    )
    if kind := params.get("kind"):  # embeddings, responses, messages: another shape of answer
        material["kind"] = kind
    if headers := params.get("headers"):  # Anthropic's betas can change the answer
        material["headers"] = headers
    digest = Request.hash_body(material)
    return f"llmops:response:{CACHE_KEY_VERSION}:{policy.pk}:{digest}"


def response_cache_get(*, policy: RoutingPolicy, params: dict) -> dict | None:
    return cache.get(cache_key(policy, params))


def response_cache_put(*, policy: RoutingPolicy, params: dict, request: Request) -> None:
    if request.finish_reason not in ("stop", "length", "tool_calls"):
        return  # a filtered answer is not one to repeat
    # "length" is kept: max_tokens is part of the key, so the same request would stop there.
    # "tool_calls" too: the same tools and conversation call the same tools.
    cache.set(
        cache_key(policy, params),
        {
            "text": request.output,
            "answer": request.answer,
            "finish_reason": request.finish_reason,
            "usage": request.usage,
            "model": request.model_id,
            "from_request": str(request.pk),
        },
        timeout=policy.cache_ttl.total_seconds(),
    )


def request_answer_from_cache(request: Request, *, cached: dict, primary: LlmModel) -> None:
    """A hit costs nothing; its ledger entry keeps the counterfactual of serving it for real."""
    # With its provider: the websocket's `started` names it from the event loop.
    answered = LlmModel.objects.select_related("provider").filter(pk=cached["model"]).first()
    model = answered or primary
    usage = Usage(**cached["usage"])
    with transaction.atomic():
        ledger_record_usage(
            key=f"req:{request.pk}:charge",
            team=request.team,
            workload=request.workload,
            request=request,
            model=model,
            mode=Mode.CACHE,
            usage=usage,
            note=f"cache hit of {cached['from_request']}",
        )
        request.model = model
        request.output = cached["text"]
        # The cached answer under this request's own identity (the view renders its id); a
        # Response keeps its own, the id its provider (or llmops) keeps the conversation by.
        answer = cached.get("answer") or {}
        kind = request.params.get("kind")
        if kind == "messages":  # a Message has no `created`, and its id is its own
            answer = {**answer, "id": conversations.message_id(request)}
        elif kind != "responses":
            answer = {k: v for k, v in answer.items() if k not in ("id", "created")}
        request.answer = answer
        request.finish_reason = cached["finish_reason"]
        request.usage = cached["usage"]
        request.status = Request.Status.COMPLETED
        # Answered in the response the client waits for: read at once.
        request.started_at = request.first_token_at = request.completed_at = timezone.now()
        request.first_read_at = request.completed_at
        request_touch(request)
        request.save()
        request_changed(request)
    metrics.observe_request(request)
