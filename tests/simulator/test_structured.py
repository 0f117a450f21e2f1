"""The simulator's structured answers validate against the schemas clients send (pydantic's,
with $defs and Optional fields; hand-written ones with enums and bounds)."""

from __future__ import annotations

import jsonschema
import pydantic
import pytest

from llmops.simulator.structured import chosen_tools, schema_value


class Address(pydantic.BaseModel):
    city: str
    zip_code: str | None = None


class Customer(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=18, le=120)
    tags: list[str]
    addresses: list[Address]
    tier: str = pydantic.Field(json_schema_extra={"enum": ["gold", "silver"]})


SCHEMAS = [
    Customer.model_json_schema(),
    {
        "type": "object",
        "properties": {
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "label": {"enum": ["spam", "ham"]},
            "ok": {"type": "boolean"},
            "when": {"type": "string", "format": "date-time"},
            "maybe": {"type": ["integer", "null"]},
            "code": {"type": "string", "minLength": 3, "maxLength": 5},
        },
        "required": ["score", "label", "ok", "when", "maybe", "code"],
        "additionalProperties": False,
    },
    {"type": "array", "items": {"type": "integer", "minimum": 5}, "minItems": 2},
]


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("seed", range(20))
def test_every_value_validates_against_its_schema(schema, seed):
    jsonschema.validate(schema_value(schema, seed), schema)


def test_pydantic_reads_the_value_back_and_a_seed_gives_the_same_value():
    value = schema_value(Customer.model_json_schema(), 7)

    assert Customer.model_validate(value).age >= 18
    assert schema_value(Customer.model_json_schema(), 7) == value


def test_tool_choice_decides_which_tools_are_called():
    tools = [
        {"type": "function", "function": {"name": "search"}},
        {"type": "function", "function": {"name": "lookup"}},
    ]

    def names(choice, *, last_role="user", prompt="find it"):
        picked = chosen_tools(tools, choice, last_role=last_role, prompt=prompt, parallel=True)
        return [t["function"]["name"] for t in picked]

    assert names("auto") == ["search"]  # none named in the prompt: the first
    assert names("auto", prompt="use lookup") == ["lookup"]
    assert names("auto", last_role="tool") == []  # a tool's result: answer in text
    assert names("required", last_role="tool") == ["search"]
    assert names({"type": "function", "function": {"name": "lookup"}}) == ["lookup"]
    assert names("none") == []
