"""django-q2 entry points: thin, by name, calling services."""

from __future__ import annotations

from billing.services import holds_sweep


def sweep_expired_holds() -> int:
    return holds_sweep()
