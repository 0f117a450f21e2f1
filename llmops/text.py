"""Text no database can store: PostgreSQL refuses NUL in text and JSON, and a lone surrogate
is not UTF-8 at all. Every surface that takes JSON from outside checks with this before
anything is written (the REST API, websockets, batch files)."""

from __future__ import annotations


def unstorable_text(value, path: str = "") -> str | None:
    """The path of the first string (or key) no database can store, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return path
        try:
            value.encode()
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and unstorable_text(key) is not None:
            return where
        if (found := unstorable_text(item, where)) is not None:
            return found
    return None
