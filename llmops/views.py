"""The project's own pages, and how the APIs answer errors that no API view answered.

Django answers an unknown URL or an unhandled exception with an HTML page (with DEBUG, which is
the dev default, its technical page with a traceback). An API client gets JSON instead: OpenAI's
error shape under /v1 (Anthropic's under /v1/messages and Claude Code's telemetry path), so each
SDK raises the right class with our message, and DRF's `{"detail": …}` under /api/v1. Three
pieces: `not_served`, the catch-all for unknown API paths; `api_errors`, around every API view,
which answers an exception the view let out with or without DEBUG; and the handler40x/500
below, for errors raised outside any view (DEBUG off only). `api_errors` also applies the
limits every API path shares (llmops.limits) before the view reads anything: client-named
headers and the body's declared size.
"""

from __future__ import annotations

import re
import uuid
from functools import wraps

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.utils.log import log_response
from django.views import defaults
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from llmops import limits
from llmops.health import run_checks
from routing.protocols import anthropic_messages, openai

# The APIs' paths: the prefix itself and anything below it (the catch-alls in llmops/urls.py).
ANTHROPIC_PATHS = re.compile(r"/v1/messages\b|/api/event_logging\b")
OPENAI_PATHS = re.compile(r"/v1\b")
NATIVE_PATHS = re.compile(r"/api/v1\b")

SERVER_ERROR = "The server had an error while processing your request."
# Django's own error answers, as (status, message, OpenAI code).
BAD_REQUEST = (400, "Bad request.", "bad_request")
FORBIDDEN = (403, "Permission denied.", "permission_denied")
NOT_FOUND = (404, "Not found.", "not_found")
INTERNAL = (500, SERVER_ERROR, "server_error")

FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="7" fill="#1f4e79"/>'
    b'<path d="M10 7v18h12" stroke="#fff" stroke-width="4" fill="none"/></svg>'
)


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


@cache_control(max_age=86400, public=True)
@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(FAVICON, content_type="image/svg+xml")


def api_error(
    request: HttpRequest, status: int, message: str, *, code: str, field: str | None = None
) -> JsonResponse | None:
    """The error answer of the API `request` was sent to, or None for a path outside the APIs.
    The x-request-id becomes the openai SDK's `e.request_id`. With a `field` (a refusal of what
    the client sent; "" for the body as a whole) the answer names it: OpenAI's `param`, and the
    native serving endpoints' `code` and `field` (routing/serving.py `native_error`)."""
    path = request.path_info
    if ANTHROPIC_PATHS.match(path):
        body = anthropic_messages.error_body(status, message)
    elif OPENAI_PATHS.match(path):
        body = openai.error_body(status, message, param=field, code=code)
    elif NATIVE_PATHS.match(path):
        body = {"detail": message}
        if field is not None:
            body.update(code=code, **({"field": field} if field else {}))
    else:
        return None
    return JsonResponse(body, status=status, headers={"x-request-id": _request_id()})


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


@csrf_exempt  # whatever the method, so that a POST gets this 404 and not a CSRF 403 page
async def not_served(request: HttpRequest) -> JsonResponse:
    """Any path under /v1 or /api/v1 that no API serves: 404 whatever the method."""
    return api_error(
        request,
        404,
        f"Invalid URL ({request.method} {request.path}): this path is not served by llmops.",
        code="unknown_url",
    )


def api_errors(view):
    """`view` answering what it lets out in its API's error shape, with or without DEBUG
    (Django would answer DEBUG's HTML traceback page), and with an x-request-id on every
    error answer. It costs the serving path one frame: no middleware, no thread. A DRF view
    whose body is larger by nature names its own cap's setting in `max_body_setting`."""
    setting = getattr(getattr(view, "view_class", None), "max_body_setting", None)
    if iscoroutinefunction(view):

        @wraps(view)
        async def inner(request, *args, **kwargs):
            if (refused := _over_limits(request, setting)) is not None:
                return refused
            try:
                response = await view(request, *args, **kwargs)
            except Exception as exc:
                # As Django's own handler: the signal's receivers may be sync and do I/O.
                return await sync_to_async(_exception_answer, thread_sensitive=False)(request, exc)
            return _with_request_id(response)

    else:

        @wraps(view)
        def inner(request, *args, **kwargs):
            if (refused := _over_limits(request, setting)) is not None:
                return refused
            try:
                response = view(request, *args, **kwargs)
            except Exception as exc:
                return _exception_answer(request, exc)
            return _with_request_id(response)

    return inner


def _over_limits(request: HttpRequest, setting: str | None = None) -> JsonResponse | None:
    """The refusal of a request past the header or body-size limits (`setting`: the view's
    own body cap), or None. Cheap (no body is read) so it runs on the event loop for the async
    serving views."""
    try:
        limits.check_headers(request)
        limits.check_body_size(request, limit=getattr(settings, setting) if setting else None)
    except limits.Refused as exc:
        return api_error(request, exc.status, exc.message, code=exc.code, field=exc.field)
    return None


def _with_request_id(response: HttpResponse) -> HttpResponse:
    if response.status_code >= 400 and "x-request-id" not in response:
        response["x-request-id"] = _request_id()
    return response


def _exception_answer(request: HttpRequest, exc: Exception) -> JsonResponse:
    """What django.core.handlers.exception.response_for_exception does (the same statuses, the
    signal, the log line with the traceback), answered in JSON; never the exception's text,
    which may hold internals."""
    if isinstance(exc, Http404):
        status, message, code = NOT_FOUND
    elif isinstance(exc, RequestDataTooBig):  # a body whose length was not declared up front
        refused = limits.body_too_large()
        status, message, code = refused.status, refused.message, refused.code
    elif isinstance(exc, PermissionDenied):
        status, message, code = FORBIDDEN
    elif isinstance(exc, BadRequest | SuspiciousOperation | MultiPartParserError):
        status, message, code = BAD_REQUEST
    else:
        signals.got_request_exception.send(sender=None, request=request)
        status, message, code = INTERNAL
    response = api_error(request, status, message, code=code)
    log_response(
        "%s: %s",
        response.reason_phrase,
        request.path,
        response=response,
        request=request,
        exception=exc,
    )
    return response


# handler400/403/404/500 (llmops/urls.py): Django calls them for errors raised outside any view
# (a bad Host header, a URL nothing resolves) and only without DEBUG.


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    status, message, code = BAD_REQUEST
    return api_error(request, status, message, code=code) or defaults.bad_request(
        request, exception
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    status, message, code = FORBIDDEN
    return api_error(request, status, message, code=code) or defaults.permission_denied(
        request, exception
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    status, message, code = NOT_FOUND
    return api_error(request, status, message, code=code) or defaults.page_not_found(
        request, exception
    )


def server_error(request: HttpRequest) -> HttpResponse:
    status, message, code = INTERNAL
    return api_error(request, status, message, code=code) or defaults.server_error(request)
