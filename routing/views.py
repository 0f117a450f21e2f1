"""Plain Django views of the routing app."""

from __future__ import annotations

import hmac

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from routing import selectors
from routing.metrics import REGISTRY
from routing.outputs import RequestOutputSerializer

PLAYGROUND_RECENT = 20


async def metrics(request):
    """/metrics for Prometheus (reads the circuit states from the database and the cache)."""
    token = settings.LLMOPS_METRICS_TOKEN
    if not token and settings.LLMOPS_METRICS_NEED_TOKEN:
        # Open only on a developer's machine: the series name every team's workloads.
        return HttpResponse(
            "metrics are off in production until LLMOPS_METRICS_TOKEN is set\n", status=403
        )
    if token and not hmac.compare_digest(
        request.headers.get("Authorization", ""), f"Bearer {token}"
    ):
        return HttpResponse("metrics need the LLMOPS_METRICS_TOKEN bearer token\n", status=401)
    body = await sync_to_async(generate_latest)(REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


@login_required
def playground(request):
    """Stream a completion over /ws/stream/ and watch its cost; deferred requests update
    themselves through /ws/requests/ (static/routing/playground.js does the talking)."""
    workloads = selectors.playground_workloads(user=request.user)
    recent = selectors.request_list(user=request.user).filter(user=request.user)[:PLAYGROUND_RECENT]
    return render(
        request,
        "routing/playground.html",
        {
            "workloads": workloads,
            "recent": recent,
            "recent_json": RequestOutputSerializer(recent, many=True).data,
        },
    )


@login_required
def request_detail(request, pk):
    """One request as a person reads it: what was asked, the decision and why, each provider
    attempt and its ledger entries (the billing ledger links here)."""
    found = (
        selectors.request_list(user=request.user, teams=selectors.readable_teams(request.user))
        .filter(pk=pk)
        .first()
    )
    if found is None:
        raise Http404("No such request.")
    entries = found.ledger_entries.select_related("model").order_by("occurred_at", "id")
    return render(request, "routing/request.html", {"r": found, "entries": entries})
