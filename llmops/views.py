from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from llmops.health import run_checks


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    ok, report = await run_checks()
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", **report}, status=200 if ok else 503
    )


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")
