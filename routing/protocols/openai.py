"""OpenAI's wire shapes as llmops answers them to OpenAI clients."""

from __future__ import annotations


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict:
    """OpenAI's error object: the SDK unwraps `error` into e.message, e.type, e.param and
    e.code, and picks its exception class by the HTTP status."""
    kind = "invalid_request_error" if status < 500 else "api_error"
    return {
        "error": {"message": message, "type": kind, "param": param or None, "code": code or None}
    }


# Anthropic's error types as the OpenAI type an OpenAI client expects for the same status.
_ANTHROPIC_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_exceeded",
    "overloaded_error": "server_error",
    "api_error": "server_error",
}


def error_envelope(body: dict, *, status: int) -> dict:
    """A provider's error object for an OpenAI client: OpenAI's own as it came, Anthropic's
    ({"type": "error", "error": {"type", "message"}}) in OpenAI's envelope."""
    error = body.get("error")
    if not isinstance(error, dict):
        return error_body(status, "The provider refused the request.")
    if body.get("type") != "error":  # OpenAI's, relayed as the provider sent it
        return body
    kind = str(error.get("type") or "")
    return {
        "error": {
            "message": str(error.get("message") or kind),
            "type": _ANTHROPIC_TYPES.get(kind, "invalid_request_error"),
            "param": None,
            "code": kind or None,
        }
    }
