"""What every client script shares: where llmops is, which model to ask for, the tool and
the structured answer they ask about, and how a script reports. The scripts run in
var/clients-venv (not llmops' own venv) and print one JSON object: what the client gave back."""

from __future__ import annotations

import json
import os
import sys
from typing import Literal

from pydantic import BaseModel

BASE_URL = os.environ["LLMOPS_BASE_URL"]  # .../v1
API_KEY = os.environ["LLMOPS_API_KEY"]
WORKLOAD = os.environ["LLMOPS_WORKLOAD"]
MODEL = os.environ["LLMOPS_MODEL"]
HEADERS = {"X-Workload": WORKLOAD}

ASK = "What is the weather in Paris? Use get_weather."


class Weather(BaseModel):
    """The structured answer every client asks for."""

    city: str
    unit: Literal["celsius", "fahrenheit"]
    temperature: int


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """The weather in a city."""
    return json.dumps({"city": city, "unit": unit, "temperature": 20})


def report(results: dict) -> None:
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


def call_dict(name: str, arguments) -> dict:
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    return {"name": name, "arguments": arguments}
