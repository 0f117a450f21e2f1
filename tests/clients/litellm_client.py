"""litellm as a client (litellm.completion with an OpenAI-compatible api_base): a tool call,
the same streamed, the second turn, and a pydantic response_format."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network for its price map

import litellm
from common import API_KEY, ASK, BASE_URL, HEADERS, MODEL, Weather, call_dict, report

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
common = {
    "model": f"openai/{MODEL}",
    "api_base": BASE_URL,
    "api_key": API_KEY,
    "extra_headers": HEADERS,
    "max_tokens": 200,
    "num_retries": 0,
}
ask = [{"role": "user", "content": ASK}]

first = litellm.completion(messages=ask, tools=[TOOL], **common)
[call] = first.choices[0].message.tool_calls
second = litellm.completion(
    messages=[
        *ask,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 20}'},
    ],
    tools=[TOOL],
    **common,
)
chunks = list(litellm.completion(messages=ask, tools=[TOOL], stream=True, **common))
streamed = litellm.stream_chunk_builder(chunks, messages=ask)
parsed = litellm.completion(
    messages=[{"role": "user", "content": "The weather in Paris."}],
    response_format=Weather,
    **common,
)
stopped = litellm.completion(
    messages=[{"role": "user", "content": "Count: one, two, three, four, five."}],
    stop=["three"],
    **common,
)

report(
    {
        "tool_call": call_dict(call.function.name, call.function.arguments),
        "first_model": first.model,
        "first_finish": first.choices[0].finish_reason,
        "second_text": second.choices[0].message.content,
        "streamed_tool_calls": [
            call_dict(c.function.name, c.function.arguments)
            for c in streamed.choices[0].message.tool_calls or []
        ],
        "structured": Weather.model_validate_json(parsed.choices[0].message.content).model_dump(),
        "stopped_text": stopped.choices[0].message.content,
        "stopped_finish": stopped.choices[0].finish_reason,
    }
)
