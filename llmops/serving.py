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

import asyncio
import contextlib

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

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
        # Without ThreadSensitiveContext: what stays thread-sensitive here (closing a streamed
        # response) shares Django's one sync thread, not a new one.
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send) -> None:
        """Django's ASGIHandler.handle but for the request signals, sent here on the event loop
        rather than through Django's sync thread: two hops there and back per API call, for
        receivers (Django's own: the query log reset, a request thread's connections closed)
        that find nothing to do on the loop's thread — this request's database work runs in
        llmops.dbthreads' pool, which checks its connections itself. A streamed body still
        closes in a thread: closing a StreamBody nobody read settles its request."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left mid-send
                await self.send_response(response, send)
            return response

        # As Django does: a disconnect while the response is made cancels making it.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            signals.request_finished.send(sender=self.__class__)
        else:
            if response.streaming:
                await sync_to_async(response.close)()
            else:
                response.close()  # request_finished, on this thread
        body_file.close()


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
