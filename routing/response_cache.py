"""The response cache: answers kept in Django's "responses" cache (one SQLite file on one
machine, Redis when scaled out), so every process shares them and entries expire by
themselves; a hit is answered at no cost, its ledger entry keeping the counterfactual of
serving it for real."""

from __future__ import annotations

import logging

from django.core.cache import caches
from django.db import transaction
from django.utils import timezone

from billing.pricing import Usage
from billing.services import ledger_record_usage
from routing import conversations, metrics
from routing.events import request_changed, request_touch
from routing.models import LlmModel, Mode, Request, RoutingPolicy
from routing.protocols import openai_chat

log = logging.getLogger(__name__)

# Bumped whenever what goes into a key changes: entries keyed the old way are never read again
# (they expire by their TTL). v2: every role counts in user_and_system_hash (in v1 a
# developer message steered an answer another key was then served for the user message alone).
# v3: every field of an OpenAI body that can change the answer counts (tools, response_format,
# stop, seed, n, top_p, penalties, logprobs, content parts): in v2 a request differing only in
# them was served another's answer. v4: the token limit left out of the key (an answer that
# ended by itself serves any limit it fits in), so a repeat asking another max_tokens hits.
CACHE_KEY_VERSION = "v4"

# The answers' own cache (per thread, as Django hands caches out): written on the serving path,
# so on one machine not the file cache (llmops/cache.py).
CACHE = "responses"


# The messages that instruct rather than converse; user_and_system_hash hashes them apart.
INSTRUCTION_ROLES = ("system", "developer")
# The client's names for the output cap, whichever protocol: not part of what an answer that
# ended by itself depends on (the request's params["max_tokens"] holds the cap applied).
TOKEN_LIMITS = frozenset({"max_tokens", "max_completion_tokens", "max_output_tokens"})
# Finish reasons of an answer the model ended itself: the same request with any cap at least
# its length would have been given the same answer. A "length" answer was cut by its cap.
ENDED_BY_ITSELF = ("stop", "tool_calls")
CUT_BY_LIMIT = "length"


def _material(params: dict, *, split_instructions: bool) -> dict:
    """Everything that can change the answer but the cap, in every mode: each message whatever
    its role (system, developer, user, assistant, tool) and its parts, in order, the model
    asked for, the temperature, and every field of the client's body but those that only tag
    or transport the call (openai_chat.answer_material) and the token limits."""
    messages = params["messages"]
    if split_instructions:
        instructions = [m for m in messages if m.get("role") in INSTRUCTION_ROLES]
        material = {
            "instructions": Request.hash_body({"instructions": instructions}),
            "conversation": [m for m in messages if m.get("role") not in INSTRUCTION_ROLES],
        }
    else:
        material = {"messages": messages}
    options = openai_chat.answer_material(params.get("options") or {})
    material.update(
        model=params.get("model"),
        temperature=params.get("temperature"),
        options={k: v for k, v in options.items() if k not in TOKEN_LIMITS},
    )
    if kind := params.get("kind"):  # embeddings, responses, messages: another shape of answer
        material["kind"] = kind
    if headers := params.get("headers"):  # Anthropic's betas can change the answer
        material["headers"] = headers
    return material


def prompt_fingerprint(params: dict) -> str:
    """What a request asks, as the response cache tells repeats apart (whatever the policy's
    cache setting): every request stores it, and the workload audit counts repeats by it."""
    return Request.hash_body(_material(params, split_instructions=False))


def cache_keys(policy: RoutingPolicy, params: dict, *, fingerprint: str = "") -> tuple[str, str]:
    """(the key of an answer that ended by itself, the key of one its cap cut). The second
    names the cap: a cut answer is the answer of that cap only."""
    if policy.cache_key == RoutingPolicy.CacheKey.USER_AND_SYSTEM_HASH:
        digest = Request.hash_body(_material(params, split_instructions=True))
    else:
        digest = fingerprint or prompt_fingerprint(params)
    base = f"llmops:response:{CACHE_KEY_VERSION}:{policy.pk}:{digest}"
    return base, f"{base}:cap:{params['max_tokens']}"


def response_cache_get(
    *, policy: RoutingPolicy, params: dict, fingerprint: str = ""
) -> dict | None:
    """A cached answer this request would have been given: one that ended by itself within
    this request's cap, else one cut by the very same cap. One cache round trip for both."""
    whole, cut = cache_keys(policy, params, fingerprint=fingerprint)
    try:
        found = caches[CACHE].get_many([whole, cut])
    except Exception:  # any backend's (SQLite, Redis, an entry that no longer unpickles)
        # The cache saves money; it is never a reason to fail a request: served as a miss.
        log.warning("response cache lookup failed; served as a miss", exc_info=True)
        metrics.CACHE_ERRORS.labels("lookup").inc()
        return None
    entry = found.get(whole)
    if entry is not None and entry.get("output_tokens", 0) <= params["max_tokens"]:
        return entry
    return found.get(cut)


def response_cache_put(*, policy: RoutingPolicy, params: dict, request: Request) -> None:
    """Keep a completed answer. One that ended by itself ("stop", or "tool_calls": the same
    tools and conversation call the same tools) serves every repeat whose cap it fits in; one
    its cap cut ("length") serves repeats with that cap only. A filtered one is not kept."""
    whole, cut = cache_keys(policy, params, fingerprint=request.prompt_fingerprint)
    if request.finish_reason in ENDED_BY_ITSELF:
        key = whole
    elif request.finish_reason == CUT_BY_LIMIT:
        key = cut
    else:
        return
    entry = {
        "text": request.output,
        "answer": request.answer,
        "finish_reason": request.finish_reason,
        "usage": request.usage,
        # Every choice's output together: within a repeat's cap, so is each choice's.
        "output_tokens": (request.usage or {}).get("output_tokens", 0),
        "model": request.model_id,
        "from_request": str(request.pk),
    }
    try:
        caches[CACHE].set(key, entry, timeout=policy.cache_ttl.total_seconds())
    except Exception:  # as a lookup's: the answer is recorded and goes out, only not kept
        log.warning("response cache store failed; answer %s not kept", request.pk, exc_info=True)
        metrics.CACHE_ERRORS.labels("store").inc()


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
        elif kind == "responses" and "max_output_tokens" in answer:
            # A Response echoes its request's cap, which may differ from the cached one's.
            cap = (request.params.get("options") or {}).get("max_output_tokens")
            answer = {**answer, "max_output_tokens": cap}
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
