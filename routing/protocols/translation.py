"""OpenAI Chat Completions ↔ Anthropic Messages: what of an OpenAI body a Claude model can
honour, and its translation. What cannot be honoured is refused by name (never dropped): the
router skips such a model in a chain, and a request no model of its chain can honour is a 400
naming the parameter and the model."""

from __future__ import annotations

# Options a Claude model honours, with the values it honours them at (None: any value).
# Fields that only tag or route the call on OpenAI's side (user, metadata, store,
# prompt_cache_key) do not change the answer and are left behind.
_ANY = None
ANTHROPIC_HONOURS = {
    "max_tokens": _ANY,
    "max_completion_tokens": _ANY,
    "temperature": _ANY,
    "top_p": _ANY,
    "stop": _ANY,
    "stream": _ANY,
    "stream_options": _ANY,
    "user": _ANY,
    "safety_identifier": _ANY,
    "metadata": _ANY,
    "store": _ANY,
    "prompt_cache_key": _ANY,
    "n": {1},
    "logprobs": {False},
    "presence_penalty": {0},
    "frequency_penalty": {0},
    "service_tier": {"auto", "default"},
}


def anthropic_refuses(*, options: dict, messages: list[dict]) -> str | None:
    """The first parameter of an OpenAI request a Claude model cannot honour, or None."""
    for key, value in options.items():
        if value is None:
            continue
        if key not in ANTHROPIC_HONOURS:
            return key
        allowed = ANTHROPIC_HONOURS[key]
        if allowed is not _ANY and value not in allowed:
            return key
    for index, message in enumerate(messages):
        if message.get("role") not in ("system", "developer", "user", "assistant"):
            return f"messages[{index}].role"
        if message.get("tool_calls"):
            return f"messages[{index}].tool_calls"
        content = message.get("content")
        if isinstance(content, list):
            for position, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text":
                    return f"messages[{index}].content[{position}]"
    return None


def stop_sequences(stop) -> list[str] | None:
    """OpenAI's `stop` (a string or a list) as Anthropic's `stop_sequences`."""
    if stop is None:
        return None
    sequences = [stop] if isinstance(stop, str) else list(stop)
    return [s for s in sequences if s] or None
