"""Entra ID tokens for Azure OpenAI resources reached with a service principal instead of a key.

The OAuth 2.0 client-credentials grant against `{authority}/{tenant}/oauth2/v2.0/token`, for
the Cognitive Services scope. A token lives about an hour; each process keeps one per
principal and fetches the next five minutes before it ends, so a call never waits on Entra
but once an hour. No azure-identity dependency: this one grant is all llmops uses of it.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx2

from llmops import outbound
from routing.providers.errors import ProviderError, from_status
from routing.providers.types import Endpoint, Entra

SCOPE = "https://cognitiveservices.azure.com/.default"
# Fetch the next token this long before the current one ends.
REFRESH_EARLY = 300.0
LABEL = "Entra ID"

_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
_lock = threading.Lock()


def _key(entra: Entra) -> tuple[str, str, str]:
    return (entra.authority, entra.tenant_id, entra.client_id)


def _cached(entra: Entra) -> str | None:
    with _lock:
        token, ends = _tokens.get(_key(entra), ("", 0.0))
    return token if token and time.monotonic() < ends - REFRESH_EARLY else None


def _fetch(entra: Entra, timeout: float) -> str:
    url = f"{entra.authority}/{entra.tenant_id}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": entra.client_id,
        "client_secret": entra.client_secret,
        "scope": SCOPE,
    }
    try:
        with outbound.sync_http_client() as client:
            response = client.post(url, data=form, timeout=timeout)
    except (httpx2.HTTPError, outbound.OutboundRefused) as exc:
        raise ProviderError(
            f"{LABEL} unreachable: {exc}", retryable=True, maybe_billed=False, kind="connection"
        ) from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 300 or not body.get("access_token"):
        # Entra's own error shape: {"error": "invalid_client", "error_description": "..."}.
        why = body.get("error_description") or body.get("error") or response.text[:200]
        raise from_status(
            f"{LABEL} refused the service principal: {why}", response.status_code or 401
        )
    lifetime = float(body.get("expires_in") or 3599)
    with _lock:
        _tokens[_key(entra)] = (body["access_token"], time.monotonic() + lifetime)
    return body["access_token"]


def token(endpoint: Endpoint) -> str:
    """A valid bearer token for the endpoint's principal (sync callers: batch workers)."""
    entra = endpoint.entra
    assert entra is not None
    return _cached(entra) or _fetch(entra, endpoint.timeouts.connect + 10)


async def atoken(endpoint: Endpoint) -> str:
    """The same for the serving path: a fetch (once an hour) runs off the event loop."""
    entra = endpoint.entra
    assert entra is not None
    return _cached(entra) or await asyncio.to_thread(_fetch, entra, endpoint.timeouts.connect + 10)


def forget() -> None:
    """Drop every cached token (tests; a rotated secret)."""
    with _lock:
        _tokens.clear()
