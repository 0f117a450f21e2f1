"""Plain Django views of the routing app."""

from __future__ import annotations

import hmac

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from routing.metrics import REGISTRY


async def metrics(request):
    """/metrics for Prometheus (reads the circuit states from the database and the cache)."""
    token = settings.LLMOPS_METRICS_TOKEN
    if token and not hmac.compare_digest(
        request.headers.get("Authorization", ""), f"Bearer {token}"
    ):
        return HttpResponse("metrics need the LLMOPS_METRICS_TOKEN bearer token\n", status=401)
    body = await sync_to_async(generate_latest)(REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
