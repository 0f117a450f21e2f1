"""Structured answers: JSON values that validate against a JSON schema (a response_format's or a
tool's parameters), chosen deterministically from a seed, and the tool calls a model makes.

The schema subset is what clients generate (pydantic, zod, hand-written): object, array,
string, number, integer, boolean, null, enum, const, required, $ref into $defs/definitions,
anyOf/oneOf/allOf (the first branch), type lists, min/max bounds and lengths."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from llmops.simulator.textgen import Choice, corpus_text, count_tokens

MAX_DEPTH = 6


def schema_value(schema: Any, seed: int) -> Any:
    """A value valid against `schema` (a JSON schema object), the same for the same seed."""
    rng = random.Random(seed)
    root = schema if isinstance(schema, dict) else {}
    return _value(root, root, rng, 0)


def _resolve(schema: dict, root: dict) -> dict:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 20:
        ref = str(schema["$ref"])
        target: Any = root
        if ref.startswith("#"):
            for part in [p for p in ref[1:].split("/") if p]:
                target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = {**{k: v for k, v in schema.items() if k != "$ref"}, **(target or {})}
        seen += 1
    return schema if isinstance(schema, dict) else {}


def _value(schema: dict, root: dict, rng: random.Random, depth: int) -> Any:
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            # The first branch that is not null: an Optional field gets a value.
            usable = [b for b in branches if _resolve(b, root).get("type") != "null"]
            return _value((usable or branches)[0], root, rng, depth)
    if isinstance(schema.get("allOf"), list):
        merged: dict = {}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            merged.setdefault("properties", {}).update(part.get("properties") or {})
            merged.setdefault("required", []).extend(part.get("required") or [])
        return _value(merged, root, rng, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else ("array" if "items" in schema else "string")
    if depth > MAX_DEPTH and kind in ("object", "array"):
        return {} if kind == "object" else []
    if kind == "object":
        properties = schema.get("properties") or {}
        if not properties and schema.get("additionalProperties") is not False:
            # Any object will do: a real model writes some keys, not `{}`.
            return {"answer": _string({}, rng)}
        required = set(schema.get("required") or properties)
        return {
            name: _value(sub, root, rng, depth + 1)
            for name, sub in properties.items()
            if name in required or rng.random() < 0.5
        }
    if kind == "array":
        low = int(schema.get("minItems") or 1)
        high = max(low, min(int(schema.get("maxItems") or 3), low + 2))
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [_value(items, root, rng, depth + 1) for _ in range(rng.randint(low, high))]
    if kind == "integer":
        low = int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
        high = int(schema.get("maximum", schema.get("exclusiveMaximum", low + 101) - 1))
        return rng.randint(low, max(low, high))
    if kind == "number":
        low = float(schema.get("minimum", schema.get("exclusiveMinimum", 0)))
        high = float(schema.get("maximum", schema.get("exclusiveMaximum", low + 100)))
        return round(low + (high - low) * rng.random() * 0.98 + (high - low) * 0.01, 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng)


def _string(schema: dict, rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2026-12-03T12:00:00Z"
    if fmt == "date":
        return "2026-12-03"
    if fmt == "email":
        return "someone@example.com"
    if fmt in ("uri", "url"):
        return "https://example.com/"
    if fmt == "uuid":
        return "6f1c0c1e-2a9b-4c8e-9a53-5d1f3c2b7e10"
    low = int(schema.get("minLength") or 1)
    high = int(schema.get("maxLength") or 60)
    text = corpus_text(rng.getrandbits(64), rng.randint(1, 6)).rstrip(".,")
    while len(text) < low:
        text += " " + text
    return text[: max(low, min(high, len(text)))]


def json_text(value: Any) -> str:
    """A value as the compact JSON models write (unicode kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def call_id(seed: int, index: int, *, prefix: str = "call_") -> str:
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=12).hexdigest()
    return f"{prefix}{digest}"


def chosen_tools(
    tools: list[dict], tool_choice: Any, *, last_role: str, prompt: str, parallel: bool
) -> list[dict]:
    """The tools a model calls, deterministically: `required` or a named tool always; `auto`
    when the conversation ends with the user (not a tool's result) — the tools named in the
    last prompt, or the first; `none` never."""
    functions = [
        t for t in tools if isinstance(t, dict) and t.get("type", "function") == "function"
    ]
    if not functions or tool_choice == "none":
        return []
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        return [t for t in functions if t["function"].get("name") == name][:1]
    if tool_choice != "required" and last_role != "user":
        return []
    named = [t for t in functions if t["function"].get("name", "\x00") in prompt]
    picked = named or functions[:1]
    return picked if parallel else picked[:1]


def tool_choice(seed: int, tools: list[dict], *, ids: str = "call_") -> Choice:
    """An answer that calls `tools` (OpenAI tool objects), arguments valid for each."""
    calls = []
    for index, tool in enumerate(tools):
        function = tool["function"]
        arguments = json_text(schema_value(function.get("parameters") or {}, seed + index))
        calls.append(
            {
                "id": call_id(seed, index, prefix=ids),
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    spent = sum(count_tokens(c["function"]["arguments"]) + 3 for c in calls)
    return Choice(seed, 0, -1, spent, "tool_calls", tool_calls=tuple(calls))


def json_choice(seed: int, schema: dict, max_tokens: int | None) -> Choice:
    """An answer whose text is JSON valid for `schema` ({}: any object), cut at max_tokens."""
    value = schema_value(schema, seed) if schema else {"answer": corpus_text(seed, 8)}
    text = json_text(value)
    spent = count_tokens(text)
    if max_tokens is not None and spent > max_tokens:
        # Cut off mid-document, as a real model is: the client sees finish_reason length.
        kept = " ".join(text.split(" ")[:max_tokens]) if " " in text else text[: max_tokens * 3]
        return Choice(seed, 0, -1, max_tokens, "length", fixed=kept)
    return Choice(seed, 0, -1, spent, "stop", fixed=text)
