"""LangChain's ChatOpenAI against llmops: bind_tools (plain, streamed, and the second turn with
the tool's result) and with_structured_output in each of its three methods."""

from __future__ import annotations

from common import API_KEY, ASK, BASE_URL, HEADERS, MODEL, Weather, get_weather, report
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

llm = ChatOpenAI(
    model=MODEL,
    base_url=BASE_URL,
    api_key=API_KEY,
    default_headers=HEADERS,
    max_tokens=300,
    max_retries=0,
)
with_tools = llm.bind_tools([get_weather])

first = with_tools.invoke([HumanMessage(ASK)])
[call] = first.tool_calls
second = with_tools.invoke(
    [HumanMessage(ASK), first, ToolMessage('{"temperature": 20}', tool_call_id=call["id"])]
)

streamed = None
for chunk in with_tools.stream([HumanMessage(ASK)]):
    streamed = chunk if streamed is None else streamed + chunk

structured = {
    method: llm.with_structured_output(Weather, method=method).invoke(
        "The weather in Paris as JSON." if method == "json_mode" else "The weather in Paris."
    )
    for method in ("function_calling", "json_schema")
}
# json_mode has no schema to send: the client gets a JSON object, whatever its keys.
json_mode = llm.with_structured_output(None, method="json_mode").invoke(
    "The weather in Paris, as a JSON object."
)

report(
    {
        "tool_call": {"name": call["name"], "arguments": call["args"]},
        "first_model": first.response_metadata.get("model_name"),
        "second_text": second.content,
        "second_tool_calls": len(second.tool_calls),
        "streamed_tool_calls": [
            {"name": c["name"], "arguments": c["args"]} for c in streamed.tool_calls
        ],
        "structured": {method: value.model_dump() for method, value in structured.items()},
        "json_mode": json_mode,
    }
)
