"""First in MIDDLEWARE: a Host outside ALLOWED_HOSTS on an API path answers in the caller's
JSON shape. CommonMiddleware would raise DisallowedHost, which Django turns into an HTML 400
(its technical page with DEBUG): an API client must never get a page. The serving fast path
(llmops/serving.py) does the same check itself, since it skips this stack."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost

from llmops import views


def _refused(request):
    try:
        request.get_host()
    except DisallowedHost:
        return views.api_error(
            request,
            400,
            "The Host header is not one this server answers.",
            code="bad_host",
            field="Host",
        )  # None outside the APIs: Django's own answer then, as for any page
    return None


class ApiHostCheck:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return _refused(request) or self.get_response(request)

    async def _acall(self, request):
        return _refused(request) or await self.get_response(request)
