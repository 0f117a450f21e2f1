"""API authentication: `Authorization: Bearer <key>` (or Anthropic's `x-api-key: <key>`, which
the anthropic SDK 0.x and Claude Code's ANTHROPIC_API_KEY send) → the key's team."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from routing.keys import api_key_authenticate
from routing.models import ApiKey, Team


@dataclass(frozen=True)
class KeyPrincipal:
    """request.user for a key-authenticated call: a team, not a person."""

    api_key: ApiKey

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    @property
    def team(self) -> Team:
        return self.api_key.team

    @property
    def pk(self) -> None:
        return None

    def __str__(self) -> str:
        return f"key:{self.api_key.prefix}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts and (api_key := request.META.get("HTTP_X_API_KEY")):
            parts = [self.keyword, api_key.encode("latin-1", errors="replace")]
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <api key>'."
            )
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(
                "The API key contains invalid characters."
            ) from None
        key = api_key_authenticate(raw=raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return KeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="llmops"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Describes ApiKeyAuthentication in the OpenAPI schema (drf-spectacular finds it by import)."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An llmops API key."}


class IsTeamAdmin(permissions.BasePermission):
    """Writes that change money rules need an admin-role key (or a staff session)."""

    message = "This needs an API key with the admin role."

    def has_permission(self, request, view) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        user = request.user
        if isinstance(user, KeyPrincipal):
            return user.api_key.role == ApiKey.Role.ADMIN
        return bool(getattr(user, "is_staff", False))


class PerKeyRateThrottle(throttling.BaseThrottle):
    """Requests per API key (per user for browser sessions), LLMOPS_API_RATE, by the generic
    cell rate algorithm: one number per caller (the theoretical arrival time of its next
    request), so a check is one small cache read and write whatever the rate. DRF's
    SimpleRateThrottle keeps a list of every request's time in the window instead: at 1,200 a
    minute that list is pickled and rewritten on every call.

    N per period lets a burst of N through, then one every period/N. The count lives in the
    "throttle" cache: this process's memory on one machine (one daphne process serves it), Redis
    when scaled out, so every process counts against the same limit. Two processes reading the
    same value at once can both pass: a throttle sheds load, it accounts for nothing."""

    scope = "api"
    PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

    def __init__(self) -> None:
        count, period = settings.LLMOPS_API_RATE.split("/")
        self.period = self.PERIODS[period]
        self.interval = self.period / int(count)
        self.delay = 0.0

    def cache_key(self, request) -> str:
        user = getattr(request, "user", None)
        if isinstance(user, KeyPrincipal):
            ident = f"key-{user.api_key.pk}"
        elif user is not None and user.is_authenticated:
            ident = f"user-{user.pk}"
        else:
            ident = self.get_ident(request)
        return f"llmops:throttle:{self.scope}:{ident}"

    def allow_request(self, request, view) -> bool:
        store = caches["throttle"]
        key, now = self.cache_key(request), time.time()
        arrival = max(store.get(key, now), now)
        # Admitted while the caller's backlog stays within one period.
        if arrival + self.interval - now > self.period:
            self.delay = arrival + self.interval - now - self.period
            return False
        store.set(key, arrival + self.interval, timeout=self.period + 1)
        return True

    def wait(self) -> float:
        return self.delay


def throttle_key(http_request, key: ApiKey) -> float | None:
    """For the async serving views (not DRF): None if allowed, else seconds to wait."""
    http_request.user = KeyPrincipal(key)
    return throttle_wait(http_request)


def throttle_wait(request) -> float | None:
    """None if `request.user` (a KeyPrincipal or a session user) may go on, else seconds to
    wait. `request` needs only `.user`: websocket messages count against the same limit."""
    throttle = PerKeyRateThrottle()
    if throttle.allow_request(request, None):
        return None
    return throttle.wait() or 1.0
