"""OpenAI Chat Completions: `POST /v1/chat/completions` (plain and streamed) and the models
list, for OpenAI and for whoever speaks its dialect (openai_api.Dialect: Azure OpenAI, Gemini's
OpenAI-compatible endpoint). The plan (usage and answer text) is shared with the Responses API
and the batch lines of both, and with Gemini's native generateContent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llmops.simulator.openai_api import (
    MODEL_CREATED,
    OPENAI,
    PROMPT_OVERHEAD_TOKENS,
    SERVER_ERROR,
    ChatCall,
    Dialect,
    OpenAIError,
    admit_tier,
    endpoint,
    fault_error,
    json_response,
    mode_for,
    parse_chat,
    read_json,
)
from llmops.simulator.state import Fault, SimState
from llmops.simulator.structured import json_choice, tool_choice
from llmops.simulator.textgen import (
    Choice,
    derive_seed,
    generate,
    output_length,
    pieces,
    prompt_seed,
    tokens,
)
from llmops.simulator.wire import (
    dumps,
    pause,
    serve_stream,
    sse_data,
)


@dataclass(slots=True)
class ChatPlan:
    """Everything a chat answer needs, worked out once: usage and every choice's text."""

    model: str
    prompt_tokens: int
    cached_tokens: int
    choices: list[Choice]
    logprobs: int | None = None  # top_logprobs per token, when logprobs is on

    @property
    def completion_tokens(self) -> int:
        return sum(choice.output_tokens for choice in self.choices)


def plan_chat(state: SimState, request: ChatCall) -> ChatPlan:
    """Usage and answers for a request; consults and feeds the prompt cache."""
    prompt_tokens = tokens(request.prompt)
    cached = state.cache.openai_cached_tokens(request.model, prompt_tokens)
    settings = state.config.for_model(request.model)
    seed = prompt_seed(request.model, f"{request.seed}\x00{request.prompt}")
    choices: list[Choice] = []
    for index in range(request.n):
        choice_seed = derive_seed(seed, index) if index else seed
        if request.tools:
            choices.append(tool_choice(choice_seed, request.tools))
            continue
        if request.schema is not None:
            choices.append(json_choice(choice_seed, request.schema, request.max_tokens))
            continue
        wanted = settings.output_tokens or output_length(
            choice_seed, settings.min_output_tokens, settings.max_output_tokens
        )
        choices.append(
            generate(choice_seed, wanted=wanted, max_tokens=request.max_tokens, stop=request.stop)
        )
    prompt_total = len(prompt_tokens) + PROMPT_OVERHEAD_TOKENS + request.image_tokens
    return ChatPlan(request.model, prompt_total, cached, choices, request.logprobs)


def finish_reason(choice: Choice) -> str:
    if choice.finish == "tool_calls":
        return "tool_calls"
    return "length" if choice.finish == "length" else "stop"


def logprobs_json(text: str, top: int) -> dict[str, Any]:
    """Per-token log probabilities for a text (one entry per word piece)."""
    entries = []
    for piece in pieces(text):
        raw = list(piece.encode())
        logprob = -round((len(piece) % 7) * 0.013 + 0.001, 4)
        alternatives = [{"token": piece, "logprob": logprob, "bytes": raw}]
        alternatives += [
            {"token": f"{piece}{i}", "logprob": logprob - 1.5 * i, "bytes": [*raw, 48 + i]}
            for i in range(1, top)
        ]
        entries.append(
            {"token": piece, "logprob": logprob, "bytes": raw, "top_logprobs": alternatives[:top]}
        )
    return {"content": entries, "refusal": None}


def usage_json(plan: ChatPlan, completion_tokens: int | None = None) -> dict[str, Any]:
    completion = plan.completion_tokens if completion_tokens is None else completion_tokens
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": plan.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_json(
    completion_id: str, created: int, plan: ChatPlan, service_tier: str = "default"
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": plan.model,
        "choices": [
            {
                "index": index,
                "message": _message(choice),
                "logprobs": None
                if plan.logprobs is None or choice.tool_calls
                else logprobs_json(choice.text, plan.logprobs),
                "finish_reason": finish_reason(choice),
            }
            for index, choice in enumerate(plan.choices)
        ],
        "usage": usage_json(plan),
        "service_tier": service_tier,
        "system_fingerprint": "fp_simulator",
    }


def _stream_deltas(choice: Choice, top_logprobs: int | None) -> list[tuple[str, str]]:
    """(delta JSON, logprobs JSON) of each streamed piece of a choice: a word of text, or a
    tool call's head (id, type and name, once) and then its arguments in pieces."""
    if choice.tool_calls:
        deltas = []
        for index, call in enumerate(choice.tool_calls):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            deltas.append(dumps({"tool_calls": [head]}))
            arguments = call["function"]["arguments"]
            for start in range(0, len(arguments), 12):
                piece = {"index": index, "function": {"arguments": arguments[start : start + 12]}}
                deltas.append(dumps({"tool_calls": [piece]}))
        return [(delta, "null") for delta in deltas]
    return [
        (
            f'{{"content":{dumps(piece)}}}',
            "null"
            if top_logprobs is None
            else dumps({"content": logprobs_json(piece, top_logprobs)["content"], "refusal": None}),
        )
        for piece in pieces(choice.text)
    ]


def _message(choice: Choice) -> dict[str, Any]:
    if choice.tool_calls:
        return {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": [],
            "tool_calls": list(choice.tool_calls),
        }
    return {"role": "assistant", "content": choice.text, "refusal": None, "annotations": []}


def bill_chat(
    state: SimState,
    plan: ChatPlan,
    mode: str,
    output_tokens: int | None = None,
    *,
    provider: str = "openai",
) -> None:
    state.usage.add(
        provider,
        plan.model,
        mode,
        input_tokens=plan.prompt_tokens,
        cached_input_tokens=plan.cached_tokens,
        output_tokens=plan.completion_tokens if output_tokens is None else output_tokens,
    )


STREAM_ERROR = sse_data(
    dumps({"error": {"message": SERVER_ERROR, "type": "server_error", "param": None, "code": None}})
)


class OpenAIChat:
    def __init__(self, state: SimState, dialect: Dialect = OPENAI) -> None:
        self.state = state
        self.dialect = dialect

    def routes(self) -> list[web.RouteDef]:
        state, dialect = self.state, self.dialect
        base = dialect.base
        return [
            web.post(f"{base}/chat/completions", endpoint(state, "chat", self.chat, dialect)),
            web.get(f"{base}/models", endpoint(state, "models", self.list_models, dialect)),
            web.get(f"{base}/models/{{model}}", endpoint(state, "models", self.get_model, dialect)),
        ]

    async def chat(self, request: web.Request, rid: str) -> web.StreamResponse:
        state, dialect = self.state, self.dialect
        body = read_json(await request.read())
        asked = dialect.model_of(state, body)
        fault = state.inference_fault(dialect.provider, "chat", body, also=asked)
        if fault is not None and fault.kind == "error":
            raise fault_error(fault)
        model = body.get("model")
        if isinstance(model, str) and model in dialect.embedding_models(state):
            # What OpenAI answers when a chat request names an embedding model.
            raise OpenAIError(
                404,
                "This is not a chat model and thus not supported in the v1/chat/completions "
                "endpoint. Did you mean to use v1/completions?",
                param="model",
            )
        dialect.check_tier(body)
        parsed = parse_chat(body, dialect.chat_models(state))
        tier_delay = admit_tier(state, parsed.model, parsed.service_tier)
        plan = plan_chat(state, parsed)
        settings = state.config.for_model(parsed.model)
        completion_id = state.ids.make("chatcmpl-")
        created = int(state.clock.now())
        if parsed.stream:
            return await self._stream(
                request, rid, completion_id, created, parsed, plan, fault, tier_delay
            )
        longest = max(choice.output_tokens for choice in plan.choices)
        delay = settings.ttft_s + (longest / settings.tokens_per_s if settings.tokens_per_s else 0)
        delay += tier_delay
        if fault is not None:
            delay += fault.stall_s
        await pause(delay)
        bill_chat(state, plan, mode_for(parsed.service_tier, "realtime"), provider=dialect.provider)
        answer = completion_json(completion_id, created, plan, parsed.service_tier)
        return json_response(answer, rid)

    async def _stream(
        self,
        request: web.Request,
        rid: str,
        completion_id: str,
        created: int,
        parsed: ChatCall,
        plan: ChatPlan,
        fault: Fault | None,
        tier_delay: float,
    ) -> web.StreamResponse:
        settings = self.state.config.for_model(parsed.model)
        usage_tail = ',"usage":null}' if parsed.include_usage else "}"
        prefix = (
            f'data: {{"id":"{completion_id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{dumps(plan.model)},"service_tier":"{parsed.service_tier}",'
            '"system_fingerprint":"fp_simulator","choices":['
        )
        head = "".join(
            f'{prefix}{{"index":{index},"delta":{{"role":"assistant",'
            f'"content":{"null" if choice.tool_calls else chr(34) * 2},"refusal":null}},'
            f'"logprobs":null,"finish_reason":null}}]{usage_tail}\n\n'
            for index, choice in enumerate(plan.choices)
        ).encode()
        choice_pieces = [_stream_deltas(choice, plan.logprobs) for choice in plan.choices]
        steps = max((len(p) for p in choice_pieces), default=0)
        events: list[bytes] = []
        weights: list[int] | None = [] if len(plan.choices) > 1 else None
        for step in range(steps):
            chunk = []
            for index, choice in enumerate(choice_pieces):
                if step < len(choice):
                    delta, logprobs = choice[step]
                    chunk.append(
                        f'{prefix}{{"index":{index},"delta":{delta},'
                        f'"logprobs":{logprobs},"finish_reason":null}}]{usage_tail}\n\n'
                    )
            events.append("".join(chunk).encode())
            if weights is not None:
                weights.append(len(chunk))
        tail = [
            f'{prefix}{{"index":{index},"delta":{{}},"logprobs":null,'
            f'"finish_reason":"{finish_reason(choice)}"}}]{usage_tail}\n\n'
            for index, choice in enumerate(plan.choices)
        ]
        if parsed.include_usage:
            tail.append(f'{prefix}],"usage":{dumps(usage_json(plan))}}}\n\n')
        tail.append("data: [DONE]\n\n")

        await pause(settings.ttft_s + tier_delay)
        mode = mode_for(parsed.service_tier, "stream")
        resp, _ = await serve_stream(
            request,
            headers={"x-request-id": rid},
            weights=weights,
            fault=fault,
            head=head,
            events=events,
            tail="".join(tail).encode(),
            error_event=STREAM_ERROR,
            tokens_per_s=settings.tokens_per_s,
            bill=lambda tokens: bill_chat(
                self.state, plan, mode, tokens, provider=self.dialect.provider
            ),
        )
        return resp

    def _models(self) -> list[str]:
        """Chat and embedding models alike, as OpenAI lists them."""
        state, dialect = self.state, self.dialect
        return [*dialect.chat_models(state), *dialect.embedding_models(state)]

    def _model_json(self, model: str) -> dict[str, Any]:
        return {
            "id": f"{self.dialect.model_prefix}{model}",
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": self.dialect.owned_by,
        }

    async def list_models(self, request: web.Request, rid: str) -> web.Response:
        data = [self._model_json(m) for m in self._models()]
        return json_response({"object": "list", "data": data}, rid)

    async def get_model(self, request: web.Request, rid: str) -> web.Response:
        model = request.match_info["model"].removeprefix(self.dialect.model_prefix)
        if model not in self._models():
            raise OpenAIError(
                404,
                f"The model '{model}' does not exist",
                param="model",
                code="model_not_found",
            )
        return json_response(self._model_json(model), rid)
