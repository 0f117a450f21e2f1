"""django-q2 entry points for routing: thin, by name, ids only."""

from __future__ import annotations

from routing.services import request_serve_escalated


def serve_escalated(request_id: str) -> str:
    """Serve realtime a request the batch machinery handed back (deadline at risk, batch
    cancelled or expired)."""
    request = request_serve_escalated(request_id=request_id)
    return request.status if request else "not queued"
