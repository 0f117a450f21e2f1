"""pydantic-ai on llmops: an agent that calls a tool and answers from its result, and an agent
with a structured output (pydantic-ai asks for it through a forced tool call)."""

from __future__ import annotations

import openai
from common import API_KEY, ASK, BASE_URL, HEADERS, MODEL, Weather, get_weather, report
from pydantic_ai import Agent, Tool
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

client = openai.AsyncOpenAI(
    base_url=BASE_URL, api_key=API_KEY, default_headers=HEADERS, max_retries=0
)
model = OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client))
settings = {"max_tokens": 200}

calls = []


def weather_tool(city: str, unit: str = "celsius") -> str:
    """The weather in a city."""
    calls.append({"city": city, "unit": unit})
    return get_weather(city, "celsius")


# Named as the prompt asks for it.
with_tool = Agent(model, tools=[Tool(weather_tool, name="get_weather")], model_settings=settings)
run = with_tool.run_sync(ASK)
tool_calls = [
    part.tool_name
    for message in run.all_messages()
    for part in message.parts
    if isinstance(part, ToolCallPart)
]

structured = Agent(model, output_type=Weather, model_settings=settings).run_sync(
    "The weather in Paris."
)

report(
    {
        "tool_calls": tool_calls,
        "tool_ran_with": calls,
        "answer": run.output,
        "structured": structured.output.model_dump(),
    }
)
