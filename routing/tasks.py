"""django-q2 entry points for routing: thin, by name, ids only."""

from __future__ import annotations

from batches.services import enqueue
from routing.client_batches import client_batch_admit
from routing.services import request_serve_escalated


def serve_escalated(request_id: str) -> str:
    """Serve realtime a request the batch machinery handed back (deadline at risk, batch
    cancelled or expired)."""
    request = request_serve_escalated(request_id=request_id)
    return request.status if request else "not queued"


def admit_client_batch(batch_id: str) -> str:
    """The next slice of a client's batch admission (OpenAI-compatible /v1/batches); enqueues
    the following one while there is more."""
    step = client_batch_admit(batch_id=batch_id)
    if step.more:
        enqueue("routing.tasks.admit_client_batch", batch_id)
    return step.status or "busy"
