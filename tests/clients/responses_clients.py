"""The Responses API through frameworks: LangChain's ChatOpenAI with use_responses_api (a tool
call, the turn after its result, a stream) and pydantic-ai's OpenAIResponsesModel (an agent with
a tool, a structured output)."""

from __future__ import annotations

import openai
from common import API_KEY, ASK, BASE_URL, HEADERS, MODEL, Weather, get_weather, report
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic_ai import Agent, Tool
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.models.openai import OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

llm = ChatOpenAI(
    model=MODEL,
    base_url=BASE_URL,
    api_key=API_KEY,
    default_headers=HEADERS,
    max_tokens=300,
    max_retries=0,
    use_responses_api=True,
)
with_tools = llm.bind_tools([get_weather])
first = with_tools.invoke([HumanMessage(ASK)])
[call] = first.tool_calls
second = with_tools.invoke(
    [HumanMessage(ASK), first, ToolMessage('{"temperature": 20}', tool_call_id=call["id"])]
)
streamed = None
for chunk in llm.stream([HumanMessage("Describe a tent in one sentence.")]):
    streamed = chunk if streamed is None else streamed + chunk

client = openai.AsyncOpenAI(
    base_url=BASE_URL, api_key=API_KEY, default_headers=HEADERS, max_retries=0
)
model = OpenAIResponsesModel(MODEL, provider=OpenAIProvider(openai_client=client))
settings = {"max_tokens": 300}
calls = []


def weather_tool(city: str, unit: str = "celsius") -> str:
    """The weather in a city."""
    calls.append({"city": city, "unit": unit})
    return get_weather(city, "celsius")


run = Agent(
    model, tools=[Tool(weather_tool, name="get_weather")], model_settings=settings
).run_sync(ASK)
structured = Agent(model, output_type=Weather, model_settings=settings).run_sync(
    "The weather in Paris."
)

report(
    {
        "langchain": {
            "tool_call": {"name": call["name"], "arguments": call["args"]},
            "second_text": second.text,
            "second_tool_calls": len(second.tool_calls),
            "streamed_text": streamed.text,
        },
        "pydantic_ai": {
            "tool_calls": [
                part.tool_name
                for message in run.all_messages()
                for part in message.parts
                if isinstance(part, ToolCallPart)
            ],
            "tool_ran_with": calls,
            "answer": run.output,
            "structured": structured.output.model_dump(),
        },
    }
)
