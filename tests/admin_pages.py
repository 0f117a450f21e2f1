"""What the admin page tests share (their `admin_client` fixture is in tests/conftest.py)."""

from __future__ import annotations


def picker_labels(response, name: str) -> list[str]:
    field = response.context["adminform"].form.fields[name]
    return [label for value, label in field.choices if value]
