"""OpenAI Embeddings on the wire (provider-contract §9): what of a client's body llmops reads,
bounds and relays, and what of an answer it keeps.

As with chat, the body is relayed as sent (the model id mapped): llmops reads the model and
checks the input (the budget hold bounds it as prompt: billing.pricing.PROMPT_OPTIONS) and
passes every other field through; the response cache keys on it as on a chat body.
The answer is kept whole on the request row (an idempotent replay, a cache hit and a batch
ticket's result repeat it)."""

from __future__ import annotations

ROUTED_FIELDS = frozenset({"model"})

# OpenAI's limits (§9): inputs per call, tokens per input (the provider checks the rest).
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192


class InputError(ValueError):
    """An `input` OpenAI would refuse, with the reason in its words."""


def options_of(body: dict) -> dict:
    """Everything of an embeddings body but the model, as sent."""
    return {k: v for k, v in body.items() if k not in ROUTED_FIELDS}


def upstream_body(*, model: str, options: dict) -> dict:
    return {"model": model, **options}


def inputs_of(value) -> list[str | list[int]]:
    """The inputs of an `input` (a string, strings, a token array or token arrays), checked
    as OpenAI checks them. Raises InputError."""
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list) and value and all(_token(t) for t in value):
        items = [value]  # one token array
    elif isinstance(value, list) and value:
        items = value
    else:
        raise InputError("must be a non-empty string, array of strings or array of tokens")
    if len(items) > MAX_INPUTS:
        raise InputError(f"at most {MAX_INPUTS} inputs per request, not {len(items)}")
    for index, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise InputError(f"input {index} is an empty string")
        elif not (isinstance(item, list) and item and all(_token(t) for t in item)):
            raise InputError(f"input {index} must be a non-empty string or array of tokens")
        elif len(item) > MAX_INPUT_TOKENS:
            raise InputError(f"input {index} is over {MAX_INPUT_TOKENS} tokens")
    if len({isinstance(item, str) for item in items}) > 1:
        raise InputError("must be all strings or all arrays of tokens, not a mix")
    return items


def _token(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def vectors(answer: dict) -> list:
    """The answer's embeddings in input order (as the provider encoded them)."""
    items = [i for i in answer.get("data") or () if isinstance(i, dict)]
    return [i.get("embedding") for i in sorted(items, key=lambda i: i.get("index", 0))]
