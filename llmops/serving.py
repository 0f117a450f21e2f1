"""The serving endpoints' own ASGI handler: Django without the middleware stack.

Under ASGI every Django middleware written as MiddlewareMixin (all of Django's own) runs its
process_request and process_response through sync_to_async: eight middleware were about a
dozen hops to a thread and back on every API call, and WhiteNoise, which is sync only, also
turned the inner stack into async_to_sync. POST /v1/chat/completions and POST /api/v1/requests
need none of it: they are called with an API key (no session, no CSRF cookie, no messages),
answer JSON or server-sent events (nothing static), and are csrf-exempt. This handler runs
them with only what the stack would add to their responses — SecurityMiddleware's and
XFrameOptionsMiddleware's work, called inline because it does no I/O — and CommonMiddleware's
Host check (ALLOWED_HOSTS), without Django's thread per request (their database work runs in
llmops.dbthreads' pool). Every other URL and method goes through Django's usual handler.
"""

from __future__ import annotations

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware

from llmops import views

SERVING_PATHS = frozenset({"/v1/chat/completions", "/api/v1/requests"})


class ServingHeaders:
    """The Host check, SecurityMiddleware (HTTPS redirect, HSTS, nosniff, referrer and opener
    policies) and XFrameOptionsMiddleware, as one async middleware."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)
        self.xframe = XFrameOptionsMiddleware(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request):
        try:
            # What CommonMiddleware does first on every other path: a Host outside
            # ALLOWED_HOSTS (DNS rebinding, poisoned absolute URLs) is refused. Answered here,
            # in the caller's JSON shape: Django's own answer is an HTML page (with DEBUG, its
            # technical page).
            request.get_host()
        except DisallowedHost:
            response = views.api_error(
                request,
                400,
                "The Host header is not one this server answers.",
                code="bad_host",
                field="Host",
            )
        else:
            response = self.security.process_request(request)
        if response is None:
            response = await self.get_response(request)
        response = self.security.process_response(request, response)
        return self.xframe.process_response(request, response)


class ServingHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        view = convert_exception_to_response(self._get_response_async)
        self._middleware_chain = convert_exception_to_response(ServingHeaders(view))

    async def __call__(self, scope, receive, send) -> None:
        if not settings.LLMOPS_DB_THREADS:
            # Database work in the request's own thread, as Django does.
            await super().__call__(scope, receive, send)
            return
        # Without ThreadSensitiveContext: what stays thread-sensitive here (the request
        # signals, closing the response) shares Django's one sync thread, not a new one.
        await self.handle(scope, receive, send)


class ServingRouter:
    """POSTs to the serving endpoints → ServingHandler; everything else → `django_app`."""

    def __init__(self, django_app) -> None:
        self.django_app = django_app
        self.serving = ServingHandler()

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("method") == "POST" and scope["path"] in SERVING_PATHS:
            await self.serving(scope, receive, send)
        else:
            await self.django_app(scope, receive, send)
