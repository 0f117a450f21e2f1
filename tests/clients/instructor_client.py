"""instructor on the openai SDK in TOOLS and JSON_SCHEMA modes: a pydantic model back."""

from __future__ import annotations

import instructor
import openai
from common import API_KEY, BASE_URL, HEADERS, MODEL, Weather, report

client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, default_headers=HEADERS, max_retries=0)
results = {}
for mode in (instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA):
    patched = instructor.from_openai(client, mode=mode)
    weather, completion = patched.chat.completions.create_with_completion(
        model=MODEL,
        response_model=Weather,
        messages=[{"role": "user", "content": "The weather in Paris."}],
        max_tokens=200,
        max_retries=0,  # a first answer that does not validate must fail the test
    )
    results[mode.name] = {
        "value": weather.model_dump(),
        "model": completion.model,
        "finish_reason": completion.choices[0].finish_reason,
    }
report(results)
