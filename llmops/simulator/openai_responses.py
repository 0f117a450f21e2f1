"""OpenAI Responses API: `POST /v1/responses` (plain, streamed, and as batch lines through
openai_batches), `GET` and `DELETE /v1/responses/{id}` (contract §10); through a Dialect also
an Azure OpenAI resource's, with its own stored responses.

A request is checked into a ResponseCall (openai_response_params), then planned as a chat
request: the same canonical prompt form, tokenizer, prompt cache and text, JSON or tool-call
answers (openai_chat's plan_chat), so a question asked on either endpoint gets the same answer and
the same bill. What Responses adds is the conversation the server keeps: a stored response
remembers its turn, and a request naming it as `previous_response_id` is answered and counted
with every earlier turn in front.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from llmops.simulator.openai_api import (
    OPENAI,
    SERVER_ERROR,
    ChatCall,
    Dialect,
    OpenAIError,
    admit_tier,
    endpoint,
    fault_error,
    json_response,
    mode_for,
    read_json,
)
from llmops.simulator.openai_chat import ChatPlan, bill_chat, plan_chat
from llmops.simulator.openai_response_params import ResponseCall, call_line, parse_response
from llmops.simulator.state import Fault, SimState
from llmops.simulator.structured import chosen_tools
from llmops.simulator.textgen import pieces
from llmops.simulator.wire import (
    Ids,
    dumps,
    pause,
    serve_stream,
    sse_event,
)

# Stored responses are kept in memory, newest last; past this many the oldest are forgotten
# (the real API keeps them for 30 days; a demo simulator must not grow without bound).
MAX_STORED = 100_000
ARGUMENT_PIECE = 12  # characters of a function call's arguments per streamed delta, as chat


@dataclass(slots=True)
class StoredResponse:
    """A stored response: what GET returns, and its turn of the conversation for a
    continuation. Earlier turns hang off `parent`, so a long chain is not copied per turn
    (and survives the deletion of the responses it continues)."""

    body: dict[str, Any]
    lines: tuple[str, ...]  # this turn: its input and its answer
    image_tokens: int
    calls: frozenset[str]  # the function calls made in this turn (input and output)
    open_calls: tuple[str, ...]  # the calls this answer made, which the next turn must answer
    parent: StoredResponse | None


def previous_not_found(response_id: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def not_found(response_id: str) -> OpenAIError:
    # The wording OpenAI (and Azure, echoed in litellm issue 34422) gives for a response id it
    # does not know; not checked against api.openai.com itself.
    return OpenAIError(404, f"Response with id '{response_id}' not found.")


@dataclass(slots=True)
class ResponsePlan:
    """A request planned as chat plans one, with the stored response it continues."""

    call: ResponseCall
    chat: ChatPlan
    previous: StoredResponse | None
    image_tokens: int  # this turn's; the prompt counts the earlier turns' too

    # The usage attributes of a ChatPlan, so a batch bills any kind of line alike.
    @property
    def prompt_tokens(self) -> int:
        return self.chat.prompt_tokens

    @property
    def cached_tokens(self) -> int:
        return self.chat.cached_tokens

    @property
    def completion_tokens(self) -> int:
        return self.chat.completion_tokens

    @property
    def incomplete(self) -> bool:
        return self.chat.choices[0].finish == "length"


def _chain(stored: StoredResponse | None) -> list[StoredResponse]:
    turns = []
    while stored is not None:
        turns.append(stored)
        stored = stored.parent
    turns.reverse()
    return turns


def plan_response(
    state: SimState, call: ResponseCall, stored: dict[str, StoredResponse] | None = None
) -> ResponsePlan:
    """Usage and the answer, with the stored conversation in front; feeds the prompt cache.
    `stored` holds the responses it may continue (OpenAI's unless given: Azure keeps its own).

    Raises the 400s that depend on what is stored: an unknown previous response, and function
    calls and outputs that do not pair up across the conversation.
    """
    previous = None
    if call.previous_response_id is not None:
        kept = state.responses if stored is None else stored
        previous = kept.get(call.previous_response_id)
        if previous is None:
            raise previous_not_found(call.previous_response_id)
    earlier = _chain(previous)
    turn = call.turn
    known = set(turn.calls).union(*(stored.calls for stored in earlier))
    for call_id in turn.outputs:
        if call_id not in known:
            raise OpenAIError(
                400,
                f"No tool call found for function call output with call_id {call_id}.",
                param="input",
            )
    waiting = [*(previous.open_calls if previous else ()), *turn.calls]
    unanswered = [call_id for call_id in waiting if call_id not in turn.outputs]
    if unanswered:
        raise OpenAIError(
            400, f"No tool output found for function call {unanswered[0]}.", param="input"
        )
    head = []
    if call.tools.echo:
        head.append("tools: " + dumps(call.tools.echo))
    if call.instructions:
        # Only this request's instructions: they are not inherited from earlier turns.
        head.append(f"developer: {call.instructions}")
    lines = [*head, *(line for stored in earlier for line in stored.lines), *turn.lines]
    chat_call = ChatCall(
        model=call.model,
        prompt="\n".join(lines),
        max_tokens=call.max_output_tokens,
        n=1,
        stop=None,
        stream=call.stream,
        include_usage=False,
        tools=chosen_tools(
            call.tools.functions,
            call.tools.choice,
            last_role=turn.last_role,
            prompt=turn.lines[-1] if turn.lines else "",
            parallel=call.echo["parallel_tool_calls"],
        )
        or None,
        schema=call.schema,
        image_tokens=turn.image_tokens + sum(stored.image_tokens for stored in earlier),
    )
    return ResponsePlan(call, plan_chat(state, chat_call), previous, turn.image_tokens)


def output_items(plan: ResponsePlan, ids: Ids) -> list[dict[str, Any]]:
    """The answer's output items: function calls, or one assistant message."""
    choice = plan.chat.choices[0]
    if choice.tool_calls:
        return [
            {
                "id": ids.make("fc_"),
                "type": "function_call",
                "status": "completed",
                "arguments": call["function"]["arguments"],
                "call_id": call["id"],
                "name": call["function"]["name"],
            }
            for call in choice.tool_calls
        ]
    part = {"type": "output_text", "text": choice.text, "annotations": [], "logprobs": []}
    return [
        {
            "id": ids.make("msg_"),
            "type": "message",
            "status": "incomplete" if plan.incomplete else "completed",
            "role": "assistant",
            "content": [part],
        }
    ]


def usage_json(plan: ResponsePlan) -> dict[str, Any]:
    chat = plan.chat
    return {
        "input_tokens": chat.prompt_tokens,
        "input_tokens_details": {"cached_tokens": chat.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": chat.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": chat.prompt_tokens + chat.completion_tokens,
    }


def response_json(
    plan: ResponsePlan,
    response_id: str,
    created_at: int,
    output: list[dict[str, Any]],
    *,
    done_at: int | None,
) -> dict[str, Any]:
    """The Response object; with no `done_at` it is the in-progress one a stream opens with."""
    if done_at is None:
        status, usage = "in_progress", None
    else:
        status, usage = ("incomplete" if plan.incomplete else "completed"), usage_json(plan)
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": done_at if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": plan.call.model,
        "output": output,
        **plan.call.echo,
        "usage": usage,
    }


def _turn_lines(plan: ResponsePlan, output: list[dict[str, Any]]) -> tuple[str, ...]:
    """This turn as a continuation reads it: its input, then its answer."""
    answer = [
        call_line(item["call_id"], item["name"], item["arguments"])
        if item["type"] == "function_call"
        else "assistant: " + item["content"][0]["text"]
        for item in output
    ]
    return (*plan.call.turn.lines, *answer)


def store(stored: dict[str, StoredResponse], plan: ResponsePlan, body: dict[str, Any]) -> None:
    """Keep a finished response for GET and continuations, when the request allows it."""
    if not plan.call.store:
        return
    made = [item["call_id"] for item in body["output"] if item["type"] == "function_call"]
    stored[body["id"]] = StoredResponse(
        body=body,
        lines=_turn_lines(plan, body["output"]),
        image_tokens=plan.image_tokens,
        calls=frozenset([*plan.call.turn.calls, *made]),
        open_calls=tuple(made),
        parent=plan.previous,
    )
    while len(stored) > MAX_STORED:
        del stored[next(iter(stored))]


class Events:
    """A stream's SSE events in order, numbered 0, 1, 2, … and grouped for write_stream: each
    token event (a delta) opens a group that carries the events up to the next delta."""

    def __init__(self) -> None:
        self.groups: list[list[bytes]] = [[]]
        self.count = 0

    def add(self, kind: str, payload: dict[str, Any], *, token: bool = False) -> bytes:
        if token:
            self.groups.append([])
        event = sse_event(kind, dumps({"type": kind, **payload, "sequence_number": self.count}))
        self.groups[-1].append(event)
        self.count += 1
        return event

    def after(self, tokens: int) -> int:
        """The sequence number of the event that follows `tokens` delta groups."""
        return sum(len(group) for group in self.groups[: tokens + 1])


def _item_events(events: Events, index: int, item: dict[str, Any]) -> None:
    item_id = item["id"]
    where = {"item_id": item_id, "output_index": index}
    if item["type"] == "function_call":
        events.add(
            "response.output_item.added",
            {"output_index": index, "item": {**item, "status": "in_progress", "arguments": ""}},
        )
        arguments = item["arguments"]
        for start in range(0, len(arguments), ARGUMENT_PIECE):
            delta = arguments[start : start + ARGUMENT_PIECE]
            events.add(
                "response.function_call_arguments.delta", {**where, "delta": delta}, token=True
            )
        events.add("response.function_call_arguments.done", {**where, "arguments": arguments})
    else:
        part = item["content"][0]
        opened = {**item, "status": "in_progress", "content": []}
        events.add("response.output_item.added", {"output_index": index, "item": opened})
        where["content_index"] = 0
        events.add("response.content_part.added", {**where, "part": {**part, "text": ""}})
        for piece in pieces(part["text"]):
            events.add(
                "response.output_text.delta", {**where, "delta": piece, "logprobs": []}, token=True
            )
        events.add("response.output_text.done", {**where, "text": part["text"], "logprobs": []})
        events.add("response.content_part.done", {**where, "part": part})
    events.add("response.output_item.done", {"output_index": index, "item": item})


def _weights(events: int, tokens: int) -> list[int]:
    """Output tokens per delta, summing to the answer's: one each for plain text (a word is a
    token, as chat bills its stream), spread evenly over JSON and arguments."""
    shares = [0, *(tokens * (index + 1) // events for index in range(events))]
    return [after - before for before, after in itertools.pairwise(shares)]


class OpenAIResponses:
    """`stored` is where responses are kept (state.responses for OpenAI; Azure keeps its own)."""

    def __init__(
        self,
        state: SimState,
        dialect: Dialect = OPENAI,
        stored: dict[str, StoredResponse] | None = None,
    ) -> None:
        self.state = state
        self.dialect = dialect
        self.stored = state.responses if stored is None else stored

    def routes(self) -> list[web.RouteDef]:
        state, dialect = self.state, self.dialect
        path = f"{dialect.base}/responses/{{response_id}}"
        return [
            web.post(
                f"{dialect.base}/responses", endpoint(state, "responses", self.create, dialect)
            ),
            web.get(path, endpoint(state, "responses", self.retrieve, dialect)),
            web.delete(path, endpoint(state, "responses", self.delete, dialect)),
        ]

    async def create(self, request: web.Request, rid: str) -> web.StreamResponse:
        state, dialect = self.state, self.dialect
        body = read_json(await request.read())
        asked = dialect.model_of(state, body)
        fault = state.inference_fault(dialect.provider, "responses", body, also=asked)
        if fault is not None and fault.kind == "error":
            raise fault_error(fault)
        model = body.get("model")
        if isinstance(model, str) and model in dialect.embedding_models(state):
            # [UNCONFIRMED] wording: what OpenAI says for an embedding model here is unverified.
            raise OpenAIError(
                400, f"The model `{model}` does not support the Responses API.", param="model"
            )
        dialect.check_tier(body)
        call = parse_response(body, dialect.chat_models(state))
        tier = call.echo["service_tier"]
        tier_delay = admit_tier(state, call.model, tier)
        plan = plan_response(state, call, self.stored)
        response_id = state.ids.make("resp_")
        created = int(state.clock.now())
        output = output_items(plan, state.ids)
        settings = state.config.for_model(plan.call.model)
        if plan.call.stream:
            return await self._stream(
                request, rid, plan, response_id, created, output, fault, tier_delay
            )
        tps = settings.tokens_per_s
        delay = settings.ttft_s + tier_delay + (plan.completion_tokens / tps if tps else 0)
        if fault is not None:
            delay += fault.stall_s
        await pause(delay)
        bill_chat(state, plan.chat, mode_for(tier, "realtime"), provider=dialect.provider)
        answer = response_json(plan, response_id, created, output, done_at=int(state.clock.now()))
        store(self.stored, plan, answer)
        return json_response(answer, rid)

    async def _stream(
        self,
        request: web.Request,
        rid: str,
        plan: ResponsePlan,
        response_id: str,
        created: int,
        output: list[dict[str, Any]],
        fault: Fault | None,
        tier_delay: float,
    ) -> web.StreamResponse:
        state = self.state
        settings = state.config.for_model(plan.call.model)
        opening = response_json(plan, response_id, created, [], done_at=None)
        events = Events()
        events.add("response.created", {"response": opening})
        events.add("response.in_progress", {"response": opening})
        for index, item in enumerate(output):
            _item_events(events, index, item)
        head = b"".join(events.groups[0])
        deltas = [b"".join(group) for group in events.groups[1:]]
        error_event = None
        if fault is not None and fault.kind == "stream_error":
            failed = {
                **opening,
                "status": "failed",
                "error": {"code": "server_error", "message": SERVER_ERROR},
            }
            number = events.after(min(fault.after_tokens, len(deltas)))
            payload = {"type": "response.failed", "response": failed, "sequence_number": number}
            error_event = sse_event("response.failed", dumps(payload))
        await pause(settings.ttft_s + tier_delay)
        tps = settings.tokens_per_s
        done_at = int(state.clock.now() + (plan.completion_tokens / tps if tps else 0))
        final = response_json(plan, response_id, created, output, done_at=done_at)
        terminal = "response.incomplete" if plan.incomplete else "response.completed"
        tail = events.add(terminal, {"response": final})
        mode = mode_for(plan.call.echo["service_tier"], "stream")
        resp, finished = await serve_stream(
            request,
            headers={"x-request-id": rid},
            weights=_weights(len(deltas), plan.completion_tokens),
            fault=fault,
            head=head,
            events=deltas,
            tail=tail,
            error_event=error_event or b"",
            tokens_per_s=settings.tokens_per_s,
            bill=lambda tokens: bill_chat(
                state, plan.chat, mode, tokens, provider=self.dialect.provider
            ),
        )
        # A broken stream leaves nothing to retrieve (the real API's record of it is unknown).
        if finished:
            store(self.stored, plan, final)
        return resp

    async def _stored_fault(self) -> None:
        """Faults on `responses` reach GET and DELETE too; they name no model."""
        fault = self.state.fault(self.dialect.provider, "responses", None, ("error", "stall"))
        if fault is not None:
            if fault.kind == "error":
                raise fault_error(fault)
            await pause(fault.stall_s)

    async def retrieve(self, request: web.Request, rid: str) -> web.Response:
        await self._stored_fault()
        response_id = request.match_info["response_id"]
        found = self.stored.get(response_id)
        if found is None:
            raise not_found(response_id)
        return json_response(found.body, rid)

    async def delete(self, request: web.Request, rid: str) -> web.Response:
        await self._stored_fault()
        response_id = request.match_info["response_id"]
        if self.stored.pop(response_id, None) is None:
            raise not_found(response_id)
        return json_response({"id": response_id, "object": "response", "deleted": True}, rid)
