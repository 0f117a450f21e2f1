"""The request front door (request_admit and request_run), the only service that calls both
billing and the providers. API keys are in routing.keys, the response cache in
routing.response_cache, requests as clients send them in routing.asks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from batches.selectors import expected_turnaround
from batches.services import BATCH_HOLD_GRACE
from billing import selectors as billing_selectors
from billing.models import Hold, LedgerEntry, Processing
from billing.pricing import PricingError, Usage, request_prompt_bound
from billing.services import (
    BudgetExceeded,
    hold_release,
    hold_settle,
    request_hold,
)
from llmops import rows
from llmops.dbthreads import db
from routing import asks, circuit, conversations, metrics, providers
from routing.asks import Ask, RequestRejected, ask_body, ask_params
from routing.config import policy_chain
from routing.events import request_changed, request_touch
from routing.models import (
    ApiKey,
    LatencyClass,
    LlmModel,
    Mode,
    Request,
    RequestAttempt,
    RoutingPolicy,
    Team,
    Workload,
)
from routing.providers import (
    BUSY_KINDS,
    Completion,
    Delta,
    ProviderError,
    stream_cut,
)
from routing.response_cache import (
    prompt_fingerprint,
    request_answer_from_cache,
    response_cache_get,
    response_cache_put,
)
from routing.router import Decision, ModelOption, PolicySpec, RouteInput, route
from routing.selectors import FLEX, expected_flex_latency

# --- requests: the front door ---------------------------------------------------------
#
# API → request_admit (validate, replay, cache, route, reserve; database only) →
# request_run (provider calls with fallback, no transaction open across them) →
# _request_complete / _request_fail (ledger entry and hold settled in one transaction).

# A hold on a request served now outlives any provider call (LLMOPS_PROVIDER_TIMEOUT_TOTAL)
# so only a process that died leaves one for the sweeper.
REALTIME_HOLD_TTL = timedelta(minutes=30)


class RequestFailed(Exception):
    """The request could not be answered; it is recorded as failed, its hold released.
    `status`: what the client is told (502 when every model failed, the provider's own 4xx
    for a request it refused, 429/503 when every provider was busy); `provider_error`: the
    provider's refusal, whose error object a client of its protocol gets as sent;
    `retry_after`: seconds the client may wait before trying again."""

    def __init__(
        self,
        request: Request,
        message: str,
        *,
        status: int = 502,
        provider_error: ProviderError | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.request = request
        self.status = status
        self.provider_error = provider_error
        self.retry_after = retry_after


# When every provider was busy and none said how long: a short wait the SDKs honour.
BUSY_RETRY_AFTER = 1.0


def _chain_failed(request: Request, message: str, failures: list) -> RequestFailed:
    """Every model failed: 429 when each failure was a provider's rate limit or overload
    (503 when none was a rate limit), with the shortest wait any asked for; else 502."""
    text = f"Every model in the chain failed: {message}"
    if failures and all(f.kind in BUSY_KINDS and not f.after_first_byte for f in failures):
        waits = [f.retry_after for f in failures if f.retry_after is not None]
        limited = any(f.kind == "rate_limited" for f in failures)
        return RequestFailed(
            request,
            text,
            status=429 if limited else 503,
            retry_after=min(waits) if waits else BUSY_RETRY_AFTER,
        )
    return RequestFailed(request, text)


NOT_BEGUN = object()  # Admitted.first_call before request_begin


@dataclass
class Admitted:
    request: Request
    replay: bool = False  # an idempotent retry: answer with the recorded request
    decision: Decision | None = None
    hold: Hold | None = None
    chain: list[LlmModel] = field(default_factory=list)
    # A client holds the connection the answer goes back on (not an escalated batch ticket):
    # it reads the answer the moment it is complete.
    client_waiting: bool = True
    # The model being called now (request_run sets it): what a translated stream's chunks
    # name, the same in each (no fallback after the first byte).
    serving: LlmModel | None = None
    # The service tier of that call ("flex", or "" for the provider's default): what the
    # answer is billed at.
    tier: str = ""
    # After a refused flex call: the same model at the standard tier first, or the chain.
    flex_fallback: str = RoutingPolicy.FlexFallback.STANDARD
    # What _call_begin said of the first model, when request_begin asked it already.
    first_call: Any = NOT_BEGUN
    # The completed request's answer body, made by `render` in the unit that completed it (a
    # hop to a database thread fewer than making it after).
    render: Callable[[Request], Any] | None = None
    rendered: Any = None


def request_begin(admitted: Admitted) -> Admitted:
    """Ask _call_begin about the first model of an admitted request that is to be called now,
    in the unit that admitted it: each hop to a database thread and back costs more than the
    work it carries. request_run takes the answer for its first attempt."""
    request = admitted.request
    if not admitted.replay and admitted.chain and request.status == Request.Status.RUNNING:
        admitted.first_call = _call_begin(request, 0, admitted.chain[0])
    return admitted


def request_admit(
    *,
    team: Team,
    api_key: ApiKey | None,
    ask: Ask,
    sync_only: bool,
    user: AbstractBaseUser | None = None,
) -> Admitted:
    """Everything before a provider is called, in the database only: the idempotent replay,
    the response cache, the routing decision and the budget hold. Raises RequestRejected:
    a refusal of the ask writes nothing; a refusal at admission (a budget, an unpriced model)
    writes nothing either unless the ask carries an Idempotency-Key, whose retries must get
    the same answer: then the request is recorded as failed with its refusal (`refusal_of`).
    `user` is the person behind a browser session, if any."""
    body = ask_body(ask)
    body_hash = Request.hash_body(body)
    if ask.idempotency_key:
        existing = Request.objects.filter(team=team, idempotency_key=ask.idempotency_key).first()
        if existing is not None:
            return _replay(existing, body_hash)

    workload = ask.workload
    policy = workload.policy
    usable = [m for m in policy_chain(policy.pk) if m.enabled and m.provider.enabled]
    if ask.pinned:
        usable = [ask.model]  # the client's model alone (openai_model checked it is allowed)
    if not usable:
        raise RequestRejected(
            503,
            f"Workload {workload.slug} has no enabled model in its policy's chain.",
            field="workload",
            code="no_model",
        )
    if ask.model is not None and ask.model not in usable:
        raise RequestRejected(
            400,
            f"Model {ask.model.model_id} is not in workload {workload.slug}'s model chain "
            f"({', '.join(m.model_id for m in usable)}).",
            field="model",
        )
    _check_honoured(ask, usable)  # pinned: the one model
    limit = min(m.max_output_tokens for m in ([ask.model] if ask.model else usable))
    max_tokens = ask.max_tokens if ask.max_tokens is not None else limit
    if max_tokens > limit:
        raise RequestRejected(
            400,
            f"max_tokens {max_tokens} is above the model's limit of {limit}.",
            field="max_tokens",
        )

    now = timezone.now()
    params = ask_params(ask, max_tokens=max_tokens)  # the limit applied if none was asked
    # Kept whether the cache is on or not: the audit counts repeats by it.
    fingerprint = prompt_fingerprint(params)
    cached = None
    if policy.cache_enabled:
        cached = response_cache_get(policy=policy, params=params, fingerprint=fingerprint)
        metrics.CACHE_LOOKUPS.labels(workload.slug, "hit" if cached else "miss").inc()
    # Only a deferrable request needs the batch turnaround (a cached read per model).
    waits = workload.latency_class != LatencyClass.REALTIME
    deferrable = waits and (
        policy.allow_batch or policy.soft_breach_action == RoutingPolicy.BreachAction.DEFER
    )
    breached_until = _soft_budget_breached(team=team, workload=workload, at=now)
    decision = route(
        RouteInput(
            latency_class=workload.latency_class,
            deadline=workload.deadline,
            policy=PolicySpec.of(policy),
            chain=_options(
                usable,
                deferrable=deferrable,
                flex=waits and policy.allow_flex and _tier_left_to_us(ask),
                at=now,
            ),
            stream=ask.stream,
            requested_model=ask.model.model_id if ask.model else None,
            sync_only=sync_only,
            cache_hit=cached is not None,
            soft_budget_breached=breached_until is not None,
        )
    )
    by_key = {(m.provider.slug, m.model_id): m for m in usable}
    chain = [by_key[(o.provider, o.model_id)] for o in decision.chain]
    request = Request(
        team=team,
        api_key=api_key,
        user=user,
        workload=workload,
        source=ask.source,
        params=params,
        metadata=ask.metadata,
        idempotency_key=ask.idempotency_key,
        body_hash=body_hash,
        created_at=now,
        deadline_at=now + workload.deadline if workload.deadline else None,
        mode=decision.mode,
        decision_reason=decision.reason,
        missed_saving=decision.missed_saving,
        prompt_fingerprint=fingerprint,
        cache_lookup=policy.cache_enabled,
    )
    if decision.refused:
        # Retry-After: the breached budget's period ends (an SDK retries only within 120 s).
        wait = max(1.0, (breached_until - now).total_seconds())
        raise _refuse(
            request,
            RequestRejected(429, decision.reason, code=SOFT_BUDGET_EXCEEDED, retry_after=wait),
        )

    mode = decision.mode
    ttl = (
        (workload.deadline or timedelta(0)) + BATCH_HOLD_GRACE
        if mode == Mode.BATCH
        else REALTIME_HOLD_TTL
    )
    try:
        # The row and its hold in one transaction: a refused hold leaves no row behind.
        with transaction.atomic():
            if cached is not None:
                request.save(force_insert=True)
                request_answer_from_cache(request, cached=cached, primary=chain[0])
                if ask.kind == "responses":
                    conversations.response_store(request)  # kept already, unless store was off
                return Admitted(request=request, decision=decision, chain=chain)
            # The row is written once, as it leaves admission (its hold refers to it).
            if mode == Mode.BATCH:
                # The batch buffer (batches app) picks queued requests up by status and model.
                request.model = chain[0]
                request.status = Request.Status.QUEUED
            else:
                request.status = Request.Status.RUNNING
                request.started_at = now
            request_touch(request)
            rows.insert(request)
            admission = request_hold(
                # At flex: the flex price of its model; a refusal re-reserves at standard.
                request=request,
                models=chain[:1] if mode == Mode.FLEX else chain,
                mode=mode,
                key=f"req:{request.pk}",
                ttl=ttl,
                at=now,
                fresh=True,
            )
            request_changed(request)
    except IntegrityError:
        if not ask.idempotency_key:
            raise
        # A concurrent retry with the same key won the insert: answer with its request.
        return _replay(
            Request.objects.get(team=team, idempotency_key=ask.idempotency_key), body_hash
        )
    except PricingError as exc:
        raise _refuse(request, RequestRejected(503, str(exc), code=UNPRICED_MODEL)) from exc
    except BudgetExceeded as exc:
        raise _refuse(request, RequestRejected(402, str(exc), code=BUDGET_EXCEEDED)) from exc
    if mode == Mode.BATCH:
        metrics.REQUESTS.labels(workload.slug, mode, request.status).inc()
    return Admitted(
        request=request,
        decision=decision,
        hold=admission.hold,
        chain=chain,
        flex_fallback=policy.on_flex_unavailable,
    )


# Refusals at admission: the code, with the status and field every answer to it carries.
BUDGET_EXCEEDED, SOFT_BUDGET_EXCEEDED, UNPRICED_MODEL = (
    "budget_exceeded",
    "soft_budget_exceeded",
    "unpriced_model",
)
REFUSALS = {
    BUDGET_EXCEEDED: (402, "budget"),
    SOFT_BUDGET_EXCEEDED: (429, "budget"),
    UNPRICED_MODEL: (503, "model"),
}
# Where a refused request's row (kept only under an Idempotency-Key) records its refusal.
REFUSAL_PARAM = "refused"


def _replay(existing: Request, body_hash: str) -> Admitted:
    if existing.body_hash != body_hash:
        raise RequestRejected(
            422,
            "This Idempotency-Key was already used with a different request body.",
            field="idempotency_key",
            code="idempotency_key_reused",
        )
    if (refusal := refusal_of(existing)) is not None:
        raise refusal  # the first answer, again (Stripe's rule): not a 502 for a 402
    return Admitted(request=existing, replay=True)


def _refuse(request: Request, rejected: RequestRejected) -> RequestRejected:
    """Count a refusal at admission; keep a row of it only under an Idempotency-Key. Returns
    the exception to raise: the replay of a concurrent retry's answer if it won the key."""
    rejected.field = REFUSALS[rejected.code][1]
    metrics.REFUSED.labels(request.team.slug, request.workload.slug, rejected.code).inc()
    if not request.idempotency_key:
        return rejected
    request.params = {**request.params, REFUSAL_PARAM: rejected.code}
    request.status = Request.Status.FAILED
    request.model, request.started_at = None, None  # refused before anything was started
    request.error = rejected.message[:2000]
    request.completed_at = timezone.now()
    request_touch(request)
    try:
        with transaction.atomic():
            request.save(force_insert=True)
    except IntegrityError:
        existing = Request.objects.get(team=request.team, idempotency_key=request.idempotency_key)
        try:
            _replay(existing, request.body_hash)
        except RequestRejected as replayed:
            return replayed
        return rejected  # it was admitted meanwhile; this one was refused all the same
    request_changed(request)
    metrics.observe_request(request)
    return rejected


def refusal_of(request: Request) -> RequestRejected | None:
    """The refusal a request recorded at admission (kept for its Idempotency-Key), or None."""
    code = request.params.get(REFUSAL_PARAM) if request.status == Request.Status.FAILED else None
    if code not in REFUSALS:
        return None
    status, field = REFUSALS[code]
    return RequestRejected(status, request.error, field=field, code=code)


def _check_honoured(ask: Ask, models: list[LlmModel]) -> None:
    """A 400 naming the parameter and the model when no model that may serve the ask can honour
    it (a chain where some can goes on: request_run skips the others, saying why)."""
    params = {"messages": ask.messages, "options": ask.options, "kind": ask.kind}
    refusals = [(model, asks.refused_param(model, params)) for model in models]
    if all(param is not None for _, param in refusals):
        model, param = refusals[0]
        raise RequestRejected(
            400,
            f"{param} cannot be honoured by {model.model_id} ({model.provider.kind} protocol); "
            f"name a model that supports it.",
            field=param,
            code="unsupported_parameter",
        )


# The surfaces whose body carries OpenAI's service_tier: chat (and an Anthropic Messages
# body translated to it), responses. Embedding models have no flex price.
FLEX_KINDS = frozenset({"chat", "responses", "messages"})


def _tier_left_to_us(ask: Ask) -> bool:
    """The client left the service tier to llmops: it named none, or `auto`. A client that
    asked for a tier (default, priority, flex) is served at that tier, as it asked."""
    return ask.kind in FLEX_KINDS and ask.options.get("service_tier") in (None, "auto")


def _options(
    models: list[LlmModel], *, deferrable: bool, flex: bool = False, at: datetime | None = None
) -> tuple[ModelOption, ...]:
    """The router's view of each model: its circuit, its batch turnaround where a batch is
    possible, and its flex terms where the request may go at flex (`flex`)."""
    # Every provider's circuit in one cache read (one MGET on Redis), not one per model.
    states = {c.provider: c.state for c in circuit.circuits({m.provider.slug for m in models})}
    at = at or timezone.now()

    def flex_of(m: LlmModel) -> tuple[timedelta | None, bool]:
        if not (flex and m.provider.serves_flex):
            return None, False
        priced, no_dearer = billing_selectors.flex_terms(m, at)
        return (expected_flex_latency(model=m), no_dearer) if priced else (None, False)

    options = []
    for m in models:
        flex_latency, flex_no_dearer = flex_of(m)
        options.append(
            ModelOption(
                provider=m.provider.slug,
                model_id=m.model_id,
                tier=m.tier,
                supports_batch=m.batchable,
                enabled=m.enabled and m.provider.enabled,
                circuit_open=states[m.provider.slug] == circuit.State.OPEN,
                # Observed p90 once enough batches ended, else the provider's promise.
                batch_turnaround=expected_turnaround(model=m)
                if deferrable and m.batchable
                else None,
                flex_latency=flex_latency,
                flex_no_dearer=flex_no_dearer,
            )
        )
    return tuple(options)


def _soft_budget_breached(*, team: Team, workload: Workload, at: datetime) -> datetime | None:
    """When the first soft budget over its limit starts a new period, or None if none is."""
    for budget in billing_selectors.budgets_touching(team=team, workload=workload):
        if budget.hard:
            continue
        status = billing_selectors.budget_status(budget, at)
        if status.spent_usd + status.reserved_usd >= status.limit_usd:
            return status.ends_at
    return None


def _request_close(request: Request, status: str, *, error: str = "") -> None:
    request.status = status
    request.error = error[:2000]
    request.completed_at = timezone.now()
    request_touch(request)
    request.save()
    request_changed(request)
    metrics.observe_request(request)


async def request_run(admitted: Admitted, *, stream: bool) -> AsyncIterator[Delta | Request]:
    """Call the chain in order until one model answers: yields Chunks (when streaming) and
    finally the completed Request. Falls back to the next model only before the first byte
    reached the client and only on failures the provider did not bill; no transaction is
    open across a provider call. Raises RequestFailed when nothing answered."""
    request = admitted.request
    chat = asks.chat_request(request)
    if previous := conversations.held_by_llmops(request, admitted.chain):
        # A Claude continuation: the earlier turns as llmops recorded them.
        chat = replace(
            chat,
            history=await db(conversations.history, team_id=request.team_id, response_id=previous),
        )
    errors: list[str] = []
    failures: list[ProviderError] = []
    plan = _attempt_plan(admitted)
    try:
        for position, (model, tier) in enumerate(plan):
            if position and plan[position - 1][1] == FLEX and tier != FLEX:
                # Flex was refused (or could not be called): what serves the request now is
                # billed at the standard price, so it is reserved at it first.
                refused = await db(_flex_refused, admitted, [m for m, _ in plan[position:]], stream)
                if refused is not None:
                    raise refused
            if position == 0 and admitted.first_call is not NOT_BEGUN:
                endpoint = admitted.first_call  # decided in the admission's unit
            else:
                endpoint = await db(_call_begin, request, position, model)
            if endpoint is None:
                errors.append(f"{model.model_id}: circuit open")
                continue
            if isinstance(endpoint, str):
                errors.append(f"{model.model_id}: {endpoint}")
                continue
            admitted.serving, admitted.tier = model, tier
            call = replace(chat, model=model.upstream_id, service_tier=tier or None)
            started = time.monotonic()
            first_byte_ms = None
            text = []
            try:
                if stream:
                    completion = None
                    # aclosing: leaving early (a client gone) closes the upstream stream at once.
                    async with aclosing(providers.stream(endpoint, call)) as events:
                        async for event in events:
                            if isinstance(event, Delta):
                                if first_byte_ms is None:
                                    first_byte_ms = _ms_since(started)
                                    # Kept in memory and saved with the outcome: a
                                    # database write here would delay the first token.
                                    request.first_token_at = timezone.now()
                                text.append(event.text)
                                yield event
                            else:
                                completion = event
                    if completion is None:  # the adapters promise one; never bill nothing
                        raise stream_cut(
                            f"{model.model_id} stream ended without usage",
                            after_first_byte=bool(text),
                        )
                else:
                    completion = await providers.complete(endpoint, call)
            except ProviderError as exc:
                await db(
                    _call_failed,
                    request,
                    position,
                    model,
                    exc,
                    latency_ms=_ms_since(started),
                    first_byte_ms=first_byte_ms,
                    service_tier=tier,
                )
                errors.append(f"{model.model_id}{' at flex' if tier else ''}: {exc}")
                failures.append(exc)
                flex_refused = tier == FLEX and not (exc.after_first_byte or text)
                if flex_refused and not exc.maybe_billed and exc.kind != "stream_cut":
                    # A 429 "resource unavailable", or any refusal of the flex tier itself
                    # (llmops asked for it, not the client): the plan's next attempt serves it.
                    continue
                if exc.after_first_byte or text or exc.kind == "stream_cut":
                    # The client already has part of an answer: another model cannot continue it.
                    # Or the provider took the call on and broke off before any output: it may
                    # bill the prompt, so no other model is paid for it too.
                    # Either way record an estimate of what it billed, flagged as such.
                    await _to_the_end(
                        _request_fail_mid_stream,
                        admitted,
                        model=model,
                        text="".join(text),
                        error=str(exc),
                    )
                    raise RequestFailed(
                        request, f"{model.model_id} failed mid-stream: {exc}"
                    ) from exc
                if exc.definitive:
                    # The provider refused the request itself: another model would refuse it
                    # alike, and the client is owed the provider's own answer.
                    await db(_request_fail, admitted, error=f"{model.model_id}: {exc}")
                    raise RequestFailed(
                        request, str(exc), status=exc.status, provider_error=exc
                    ) from exc
                if exc.maybe_billed:
                    break  # retrying a call that may have been billed could pay twice
                continue
            except (asyncio.CancelledError, GeneratorExit):
                # The client went away mid-stream: the provider still bills what it produced.
                await _to_the_end(
                    _request_fail_mid_stream,
                    admitted,
                    model=model,
                    text="".join(text),
                    error="client disconnected",
                    status=Request.Status.CANCELLED,
                )
                raise
            done = await _to_the_end(
                _call_succeeded,
                admitted,
                position,
                model,
                completion=completion,
                latency_ms=_ms_since(started),
                first_byte_ms=first_byte_ms,
                service_tier=tier,
            )
            yield done
            return
        message = "; ".join(errors) or "no model could be called"
        await db(_request_fail, admitted, error=message)
        raise _chain_failed(request, message, failures)
    except (asyncio.CancelledError, GeneratorExit):
        # Cancelled outside a provider call (before the first, between fallbacks): nothing
        # was billed, so the hold goes back. After an estimate this finds nothing to do.
        await asyncio.shield(db(request_abandon, admitted))
        raise


def _attempt_plan(admitted: Admitted) -> list[tuple[LlmModel, str]]:
    """(model, service tier) in the order they are tried: the chain at the provider's default
    tier; at flex, the first model at flex, then per the policy the same model at the
    standard tier or straight down the chain."""
    chain = admitted.chain
    if admitted.request.mode != Mode.FLEX:
        return [(model, "") for model in chain]
    plan = [(chain[0], FLEX)]
    if admitted.flex_fallback == RoutingPolicy.FlexFallback.STANDARD:
        plan.append((chain[0], ""))
    return plan + [(model, "") for model in chain[1:]]


def _flex_refused(admitted: Admitted, models: list[LlmModel], stream: bool) -> RequestFailed | None:
    """Flex is out: the request goes on at the standard tier, billed at its price, so its
    flex-priced hold becomes one at the standard price of the models left. A hard budget that
    cannot take the difference fails it (its hold given back): it is never overspent."""
    request = admitted.request
    mode = Mode.STREAM if stream else Mode.REALTIME
    with transaction.atomic():
        if admitted.hold is not None:
            hold_release(hold=admitted.hold)
        try:
            admission = request_hold(
                request=request,
                models=models,
                mode=mode,
                key=f"req:{request.pk}:standard",
                ttl=REALTIME_HOLD_TTL,
            )
        except (BudgetExceeded, PricingError) as exc:
            message = f"Flex was refused and the standard tier cannot be served: {exc}"
            _request_close(request, Request.Status.FAILED, error=message)
            status = 402 if isinstance(exc, BudgetExceeded) else 503
            return RequestFailed(request, message, status=status)
    admitted.hold = admission.hold
    request.mode = mode
    request.decision_reason += " Flex was refused: served at the standard tier, at its price."
    return None


async def _to_the_end(fn, *args, **kwargs):
    """Run a database unit that writes the ledger to its end even if the caller is cancelled
    meanwhile (a client gone, a websocket's drain over): request_abandon, run next, would
    otherwise release the hold this unit is settling, and the usage would go unrecorded."""
    unit = asyncio.ensure_future(db(fn, *args, **kwargs))
    try:
        return await asyncio.shield(unit)
    except asyncio.CancelledError:
        await unit
        raise


def _call_begin(request: Request, position: int, model: LlmModel):
    """Before calling `model`: its endpoint; None (recorded as skipped) if its circuit is
    open; why, if it cannot honour the request (skipped too). One database unit, as are
    _call_failed and _call_succeeded: each hop to a thread and back costs more than the work
    it carries."""
    if (param := asks.refused_param(model, request.params)) is not None:
        reason = f"cannot honour {param} ({model.provider.kind} protocol)"
        _attempt_record(request, position, model, RequestAttempt.Outcome.SKIPPED, error=reason)
        return reason
    provider = model.provider.slug
    if not circuit.allow(provider):
        outcome = RequestAttempt.Outcome.SKIPPED
        _attempt_record(request, position, model, outcome, error=f"{provider} circuit open")
        return None
    return model.provider.endpoint()


def _call_failed(
    request: Request, position: int, model: LlmModel, exc: ProviderError, **timings
) -> None:
    if not exc.definitive:  # a request the provider refused says nothing of its health
        circuit.record_failure(model.provider.slug, str(exc))
    _attempt_record(
        request,
        position,
        model,
        RequestAttempt.Outcome.ERROR,
        error=str(exc),
        error_kind=exc.kind,
        status_code=exc.status,
        **timings,
    )


def _call_succeeded(
    admitted: Admitted, position: int, model: LlmModel, *, completion: Completion, **timings
) -> Request:
    circuit.record_success(model.provider.slug)
    request = _request_complete(
        admitted, model=model, completion=completion, attempt=(position, timings)
    )
    if admitted.render is not None:
        admitted.rendered = admitted.render(request)
    return request


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _attempt_record(request: Request, position: int, model: LlmModel, outcome: str, **fields):
    metrics.ATTEMPTS.labels(model.provider.slug, model.model_id, outcome).inc()
    attempt = RequestAttempt(
        request=request,
        position=position,
        model=model,
        outcome=outcome,
        **{k: (v[:500] if isinstance(v, str) else v) for k, v in fields.items() if v is not None},
    )
    rows.insert(attempt)


def _request_complete(
    admitted: Admitted, *, model: LlmModel, completion: Completion, attempt=None
) -> Request:
    """The answer and its bill, in one transaction: the ledger entry settles the hold. With
    `attempt` ((position, timings) of the call that answered), its record too."""
    request = admitted.request
    usage = completion.usage
    request.mode = _billed_mode(request, model, completion, tier=admitted.tier)
    with transaction.atomic():
        if attempt is not None:
            position, timings = attempt
            _attempt_record(request, position, model, RequestAttempt.Outcome.OK, **timings)
        hold_settle(
            hold=admitted.hold,
            key=f"req:{request.pk}:charge",
            model=model,
            mode=request.mode,
            usage=usage,
        )
        request.model = model
        request.output = completion.text
        request.finish_reason = completion.finish_reason
        request.answer = conversations.recorded_answer(request, completion)
        request.usage = usage.as_dict()
        request.status = Request.Status.COMPLETED
        request.completed_at = timezone.now()
        request.first_token_at = request.first_token_at or request.completed_at
        if admitted.client_waiting:
            request.first_read_at = request.completed_at
        request_touch(request)
        rows.update(request)  # every field, as save() would, without the ORM's machinery
        request_changed(request)
    metrics.observe_request(request)
    policy = request.workload.policy
    if policy.cache_enabled:
        response_cache_put(policy=policy, params=request.params, request=request)
    if request.params.get("kind") == "responses":
        conversations.response_store(request)
    return request


def _billed_mode(request: Request, model: LlmModel, completion: Completion, *, tier: str) -> str:
    """The mode an answer is billed in: the tier the provider says served it (an OpenAI answer
    names it, `service_tier`) when that is flex or was asked as flex, else as routed."""
    served = completion.answer.get("service_tier") if completion.answer else None
    if tier == FLEX and served not in (None, FLEX):
        # Asked at flex, served at another tier: billed at what served it.
        return Mode.STREAM if request.params.get("stream") else Mode.REALTIME
    if tier != FLEX and served == FLEX and request.mode in (Mode.REALTIME, Mode.STREAM):
        # The client asked for flex itself: billed at the flex price where the model has one.
        flex_priced = billing_selectors.price_or_none(model, Processing.FLEX, timezone.now())
        return Mode.FLEX if flex_priced else request.mode
    return request.mode


def _request_fail(admitted: Admitted, *, error: str) -> None:
    with transaction.atomic():
        hold_release(hold=admitted.hold)
        _request_close(admitted.request, Request.Status.FAILED, error=error)


def request_abandon(admitted: Admitted) -> None:
    """Close a request whose client left while no provider call was open: release its hold.
    Does nothing to a request already closed."""
    with transaction.atomic():
        request = Request.objects.select_for_update().get(pk=admitted.request.pk)
        if request.status not in (Request.Status.RECEIVED, Request.Status.RUNNING):
            return
        if admitted.hold is not None:
            hold_release(hold=admitted.hold)
        _request_close(request, Request.Status.CANCELLED, error="client disconnected")


def _request_fail_mid_stream(
    admitted: Admitted,
    *,
    model: LlmModel,
    text: str,
    error: str,
    status: str = Request.Status.FAILED,
) -> None:
    """An answer cut after the provider took it on: record what the provider billed as an
    estimate (a byte-bounded prompt and ~4 characters per output token), settle the hold."""
    request = admitted.request
    usage = Usage(
        input_tokens=request_prompt_bound(request.params),
        output_tokens=max(1, -(-len(text) // 4)) if text else 0,
    )
    with transaction.atomic():
        hold_settle(
            hold=admitted.hold,
            key=f"req:{request.pk}:charge",
            model=model,
            mode=request.mode,
            usage=usage,
            kind=LedgerEntry.Kind.ESTIMATE,
            note=f"estimated: {error}"[:300],
        )
        request.model = model
        request.output = text
        request.usage = usage.as_dict()
        _request_close(request, status, error=error)


def request_mark_read(*, request: Request) -> None:
    """Note when the client first read a finished result (the workload audit compares it with
    the deadline: results nobody reads for hours did not need realtime)."""
    if request.first_read_at is None and request.status == Request.Status.COMPLETED:
        now = timezone.now()
        Request.objects.filter(pk=request.pk, first_read_at__isnull=True).update(first_read_at=now)
        request.first_read_at = now


def request_serve_escalated(*, request_id: str) -> Request | None:
    """Serve now a request the batch machinery handed back as queued with mode realtime (its
    deadline is at risk, or its batch was cancelled or expired). Its batch-priced hold becomes
    a realtime one; a budget that cannot take the difference fails it. None if another worker
    took it or it is no longer waiting."""
    now = timezone.now()
    claimed = Request.objects.filter(
        pk=request_id, status=Request.Status.QUEUED, mode=Mode.REALTIME
    ).update(status=Request.Status.RUNNING, started_at=now, updated_at=now)
    if claimed != 1:
        return None
    request = Request.objects.select_related("team", "workload__policy").get(pk=request_id)
    policy = request.workload.policy
    chain = [m for m in policy_chain(policy.pk) if m.enabled and m.provider.enabled]
    # The model the batch would have used first: the client may have asked for it.
    chain.sort(key=lambda m: m.pk != request.model_id)
    with transaction.atomic():
        for hold in Hold.objects.filter(request=request, status=Hold.Status.HELD):
            hold_release(hold=hold)
        try:
            if not chain:
                raise PricingError(f"workload {request.workload.slug} has no enabled model")
            admission = request_hold(
                request=request,
                models=chain,
                mode=Mode.REALTIME,
                key=f"req:{request.pk}:realtime",
                ttl=REALTIME_HOLD_TTL,
                at=now,
            )
        except (BudgetExceeded, PricingError) as exc:
            _request_close(request, Request.Status.FAILED, error=f"escalation refused: {exc}")
            return request
    admitted = Admitted(request=request, hold=admission.hold, chain=chain, client_waiting=False)

    async def serve() -> Request:
        async for event in request_run(admitted, stream=False):
            if isinstance(event, Request):
                return event
        return request

    try:
        return async_to_sync(serve)()
    except RequestFailed as exc:
        return exc.request
