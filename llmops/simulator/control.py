"""`/_sim/*`: how tests and the demo steer the simulator. JSON in, JSON out, no auth.

GET  /_sim/health
GET  /_sim/config                 current settings, per-model overrides, known models
POST /_sim/config                 {"tokens_per_s": 50}                 global
                                  {"model": "gpt-4o", "ttft_ms": 900}  one model
                                  {"models": {"gpt-4o": {...}}}        several models
                                  {"add_models": {"openai": ["llama-3"]}}  (openai, anthropic
                                  or gemini; Azure has deployments instead)
     keys: ttft_ms, tokens_per_s, batch_validating_s, batch_turnaround_s,
           batch_finalizing_s, batch_cancel_s, output_tokens (null = from the seed),
           min_output_tokens, max_output_tokens,
           flex_delay_ms (extra wait before a flex answer's first byte, default 300),
           flex_unavailable_rate (0-1 share of flex calls refused 429 resource_unavailable,
           default 0),
           enqueued_token_limit (Azure batches' enqueued-token quota, null = none, the
           default; per model it may also name an Azure deployment); all of these global or
           per model. The batch timings drive every provider's batches (OpenAI, Anthropic,
           Azure, Gemini), by the model's settings.
     global only: flex_models (the OpenAI models that take service_tier "flex", the whole
           list; default gpt-5, gpt-5-mini, gpt-5-nano, o3, o4-mini),
           azure_deployments ({"name": "OpenAI model"} added to the Azure resource's
           deployments, {"name": null} removes one; every OpenAI model is also a deployment
           of itself; default llmops-gpt-4o-mini, llmops-gpt-5-mini, llmops-embed-small)
GET  /_sim/clock, POST /_sim/clock {"advance_s": 3600}
GET  /_sim/usage                  {provider: {model: {mode: counts}}, "totals": counts}
                                  providers: openai, anthropic, azure (by the deployment's
                                  model), gemini; modes: realtime, stream, batch, flex
                                  (OpenAI's flex tier, plain or streamed)
POST /_sim/reset                  start config; no faults, usage, files, batches, stored
                                  responses, uploads, cache, offset (Entra ID tokens already
                                  issued stay valid)
POST /_sim/faults -> 201 {"id"}   see state.parse_fault for the fields; providers openai,
                                  anthropic, azure, gemini. Azure's enqueued-token refusal:
                                  {"provider": "azure", "endpoint": "batches",
                                   "kind": "token_limit_exceeded", "count": 1}
GET  /_sim/faults, DELETE /_sim/faults, DELETE /_sim/faults/{id}
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from llmops.simulator.state import ConfigError, SimState, parse_fault
from llmops.simulator.wire import JSON_TYPE, dump_bytes, is_number


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=dump_bytes(body), status=status, content_type=JSON_TYPE)


def _refuse(message: str, status: int = 400) -> web.Response:
    return _json({"error": {"message": message}}, status)


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigError("the body is not valid JSON") from None


class BatchBook(Protocol):
    """A provider's batches: bills what finished by now when asked."""

    advance_all: Callable[[], Awaitable[None]]


class Control:
    def __init__(self, state: SimState, batch_books: Sequence[BatchBook]) -> None:
        self.state = state
        self.batch_books = batch_books

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/health", self.health),
            web.get("/_sim/config", self.get_config),
            web.post("/_sim/config", self.set_config),
            web.get("/_sim/clock", self.get_clock),
            web.post("/_sim/clock", self.set_clock),
            web.get("/_sim/usage", self.usage),
            web.post("/_sim/reset", self.reset),
            web.get("/_sim/faults", self.list_faults),
            web.post("/_sim/faults", self.add_fault),
            web.delete("/_sim/faults", self.clear_faults),
            web.delete("/_sim/faults/{fault_id}", self.delete_fault),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "now": self.state.clock.now()})

    async def get_config(self, request: web.Request) -> web.Response:
        return _json(self.state.config.snapshot())

    async def set_config(self, request: web.Request) -> web.Response:
        try:
            self.state.config.apply(await _body(request))
        except ConfigError as exc:
            return _refuse(str(exc))
        return _json(self.state.config.snapshot())

    def _clock_json(self) -> dict[str, float]:
        clock = self.state.clock
        return {"now": clock.now(), "offset_s": clock.offset_s}

    async def get_clock(self, request: web.Request) -> web.Response:
        return _json(self._clock_json())

    async def set_clock(self, request: web.Request) -> web.Response:
        try:
            body = await _body(request)
        except ConfigError as exc:
            return _refuse(str(exc))
        if not isinstance(body, dict) or set(body) - {"advance_s"}:
            return _refuse('the clock only takes {"advance_s": seconds}')
        seconds = body.get("advance_s", 0)
        # Batch state is derived from time and billed as it moves: time must not run backwards.
        if not is_number(seconds) or seconds < 0:
            return _refuse("advance_s must be a number >= 0")
        self.state.clock.advance(float(seconds))
        return _json(self._clock_json())

    async def usage(self, request: web.Request) -> web.Response:
        # Batches are billed as their items finish, worked out when somebody looks.
        for book in self.batch_books:
            await book.advance_all()
        return _json(self.state.usage.snapshot())

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return _json({"status": "reset"})

    async def list_faults(self, request: web.Request) -> web.Response:
        now = self.state.clock.now()
        return _json({"data": [f.as_json(now) for f in self.state.faults.faults.values()]})

    async def add_fault(self, request: web.Request) -> web.Response:
        state = self.state
        try:
            fault = parse_fault(await _body(request), state.ids.make("fault_"), state.clock.now())
        except ConfigError as exc:
            return _refuse(str(exc))
        state.faults.faults[fault.id] = fault
        return _json({"id": fault.id, "fault": fault.as_json(state.clock.now())}, 201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        removed = len(self.state.faults.faults)
        self.state.faults.clear()
        return _json({"deleted": removed})

    async def delete_fault(self, request: web.Request) -> web.Response:
        fault_id = request.match_info["fault_id"]
        if self.state.faults.faults.pop(fault_id, None) is None:
            return _refuse(f"no fault with id {fault_id}", 404)
        return _json({"id": fault_id, "deleted": True})
