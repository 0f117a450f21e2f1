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
