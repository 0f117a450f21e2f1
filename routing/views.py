"""Plain Django views of the routing app."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from routing.metrics import REGISTRY


async def metrics(request):
    """/metrics for Prometheus (reads the circuit states from the database and the cache)."""
    body = await sync_to_async(generate_latest)(REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
