"""One policy for every URL the server calls because an admin typed it: provider base URLs and
batch webhooks.

A URL is refused when its host is, or resolves to, an address that is not publicly routable
(loopback, private, link-local with the cloud metadata service at 169.254.169.254, unspecified,
multicast, reserved...) unless the operator lists it in LLMOPS_OUTBOUND_ALLOW_PRIVATE. An admin
account is not the operator: without this, whoever can edit a provider or a workload could make
the server call its own admin, a database port or the metadata service for them.

It is checked twice: when the URL is saved (`check_url`, a message naming the reason) and when a
connection is opened (`checked_addresses`), because a name may resolve elsewhere by then (DNS
rebinding) and the allow-list may have changed. The connection then goes to the address that was
checked, never to a second lookup of the name. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore2
import httpx2
from django.conf import settings

from llmops.netstream import AsyncioBackend

log = logging.getLogger(__name__)

# How long a name's checked addresses are reused: the serving path opens connections often and
# must not wait for DNS each time; short, so that a changed record is seen within a minute.
DNS_TTL_SECONDS = 30
# The SDKs' own pool sizes (openai/anthropic DEFAULT_CONNECTION_LIMITS), kept when we pass ours.
POOL_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """The target is not one the server may call; the message says why."""


class Unresolvable(OutboundRefused):
    """The name does not resolve (here, now)."""


@dataclass(frozen=True)
class AllowEntry:
    network: Network | None  # an address or CIDR block
    host: str | None  # or a name, compared with the URL's host
    port: int | None  # None: any port


def parse_allow_list(entries: Iterable[str]) -> tuple[AllowEntry, ...]:
    """LLMOPS_OUTBOUND_ALLOW_PRIVATE's entries: `host`, `host:port`, `[v6]:port`, an address or a
    CIDR block. Raises ValueError naming a bad entry."""
    parsed = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            parsed.append(AllowEntry(ipaddress.ip_network(entry, strict=False), None, None))
            continue
        except ValueError:
            pass
        parts = urlsplit("//" + entry)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port == -1 or parts.path or parts.username or parts.query:
            raise ValueError(f"{entry!r} is not host, host:port or a CIDR block")
        try:
            network = ipaddress.ip_network(parts.hostname)
        except ValueError:
            parsed.append(AllowEntry(None, parts.hostname.lower(), port))
        else:
            parsed.append(AllowEntry(network, None, port))
    return tuple(parsed)


def _allow_list() -> tuple[AllowEntry, ...]:
    # Read on each check, not at import: tests and a reloaded settings module change it.
    return _parse_cached(tuple(settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE))


_parsed: dict[tuple[str, ...], tuple[AllowEntry, ...]] = {}


def _parse_cached(entries: tuple[str, ...]) -> tuple[AllowEntry, ...]:
    if entries not in _parsed:
        _parsed[entries] = parse_allow_list(entries)
    return _parsed[entries]


def why_not_public(address: Address) -> str | None:
    """Why `address` is not a public internet address, or None if it is one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if address.is_unspecified:
        return "unspecified (this host)"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (the cloud metadata service lives at 169.254.169.254)"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not publicly routable"
    return None


def _allowed(host: str, port: int, address: Address, entries: tuple[AllowEntry, ...]) -> bool:
    for entry in entries:
        if entry.port is not None and entry.port != port:
            continue
        if entry.network is not None and address in entry.network:
            return True
        if entry.host is not None and entry.host == host:
            return True
    return False


def _check(host: str, port: int, found: list[str]) -> list[str]:
    entries = _allow_list()
    for text in found:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
        why = why_not_public(address)
        if why and not _allowed(host, port, address, entries):
            subject = text if host == text else f"{host} resolves to {text}, which"
            raise OutboundRefused(
                f"{subject} is {why}; the operator must allow it in LLMOPS_OUTBOUND_ALLOW_PRIVATE"
            )
    return found


# (host, port, allow-list) → (expires at, checked addresses or the refusal)
_cache: dict[tuple, tuple[float, list[str] | OutboundRefused]] = {}
_cache_lock = threading.Lock()


def _cached(key: tuple) -> list[str] | None:
    hit = _cache.get(key)
    if hit is None or hit[0] < time.monotonic():
        return None
    if isinstance(hit[1], OutboundRefused):
        raise OutboundRefused(str(hit[1]))
    return hit[1]


def _store(key: tuple, host: str, port: int, infos: list) -> list[str]:
    found = list(dict.fromkeys(info[4][0] for info in infos))  # unique, in resolver order
    try:
        result: list[str] | OutboundRefused = _check(host, port, found)
    except OutboundRefused as refused:
        result = refused
    with _cache_lock:
        if len(_cache) > 10_000:  # names an admin typed: few; a bound all the same
            _cache.clear()
        _cache[key] = (time.monotonic() + DNS_TTL_SECONDS, result)
    if isinstance(result, OutboundRefused):
        log.warning("outbound call refused: %s", result)
        raise OutboundRefused(str(result))
    return result


def _key(host: str, port: int) -> tuple:
    return (host.lower(), port, tuple(settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE))


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses of host:port, every one allowed, to connect to instead of the name.
    Raises OutboundRefused (Unresolvable if the name does not resolve). Blocks on DNS at most
    once per DNS_TTL_SECONDS per name."""
    key = _key(host, port)
    if (found := _cached(key)) is not None:
        return found
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve ({exc})") from None
    return _store(key, host.lower(), port, infos)


async def checked_addresses_async(host: str, port: int) -> list[str]:
    """checked_addresses without blocking the event loop on a lookup."""
    key = _key(host, port)
    if (found := _cached(key)) is not None:
        return found
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve ({exc})") from None
    return _store(key, host.lower(), port, infos)


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise OutboundRefused("the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise OutboundRefused("the URL names no host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str) -> None:
    """Save-time check of an http(s) URL's target; raises OutboundRefused naming why. A name
    that does not resolve from here passes: it may exist only in production's DNS, and every
    connection is checked again."""
    host, port = _host_port(url)
    with contextlib.suppress(Unresolvable):
        checked_addresses(host, port)


def reset() -> None:
    """Forget cached lookups (tests that change what a name resolves to)."""
    with _cache_lock:
        _cache.clear()


# --- webhooks: one POST, no redirects ------------------------------------------------------


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body` to `url` at a checked address and return the status. A redirect is an
    answer like any other (http.client never follows one), so signed headers go nowhere but
    `url`. Raises OutboundRefused, or OSError when the receiver cannot be reached."""
    host, port = _host_port(url)
    addresses = checked_addresses(host, port)
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    # Host header and TLS certificate check use the URL's name; the socket goes to the checked
    # address. http.client opens its socket through this attribute (also under TLS).
    connection = cls(host, port, timeout=timeout)
    connection._create_connection = lambda _address, *args: _connect(addresses, port, *args)
    try:
        connection.request("POST", parts.path or "/", body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)  # drained a little; a receiver's answer is not ours to keep
        if 300 <= response.status < 400:
            raise RedirectRefused(response.status, response.getheader("Location", ""))
        return response.status
    except http.client.HTTPException as exc:  # not HTTP: callers handle OSError only
        raise OSError(f"not an HTTP answer: {exc!r}") from exc
    finally:
        connection.close()


class RedirectRefused(OSError):
    def __init__(self, status: int, location: str) -> None:
        super().__init__(f"redirect ({status}) to {location[:200]!r} not followed")
        self.status = status


def _connect(addresses: list[str], port: int, timeout=None, source=None) -> socket.socket:
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout, source)
        except OSError as exc:
            error = exc
    raise error or OSError("no address to connect to")


# --- provider SDK clients: pooled connections to checked addresses -------------------------


class _GuardedAsyncBackend(httpcore2.AsyncNetworkBackend):
    """Opens each new pooled connection to a checked address of the URL's host (TLS still
    verifies the name): a lookup per connection at most, from the cache, never per request."""

    def __init__(self) -> None:
        # asyncio's transports, not anyio's socket stream (llmops/netstream.py: a relayed
        # stream's reads cost a quarter of daphne's CPU through anyio)
        self._inner = AsyncioBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = await checked_addresses_async(host, port)
        except OutboundRefused as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore2.ConnectError(f"{host} has no address")

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore2.ConnectError("unix sockets are not an outbound target")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedSyncBackend(httpcore2.NetworkBackend):
    """_GuardedAsyncBackend for the sync clients of the batch workers."""

    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = checked_addresses(host, port)
        except OutboundRefused as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore2.ConnectError(f"{host} has no address")

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore2.ConnectError("unix sockets are not an outbound target")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The one TLS context of this process's outbound clients. Building one loads the CA bundle
    (30 ms here); the batch workers make a client per call (three contexts per Gemini SDK
    client), and a worker recovering 135 small jobs spent 56 of its 72 s loading CA bundles.
    A context is read-only once built and safe to share between clients and threads."""
    return httpx2.create_ssl_context()


def _guarded_pool(pool_class, backend):
    """httpx takes no network backend; its pool does. Same pool settings as the transport's."""
    return pool_class(
        ssl_context=ssl_context(),
        max_connections=POOL_LIMITS.max_connections,
        max_keepalive_connections=POOL_LIMITS.max_keepalive_connections,
        keepalive_expiry=POOL_LIMITS.keepalive_expiry,
        network_backend=backend,
    )


def async_http_client() -> httpx2.AsyncClient:
    """An httpx client for an SDK (`http_client=`): checked addresses, no redirects (the SDKs'
    default follows them, and Anthropic's x-api-key header would follow along), and no proxy
    from the environment (a proxy would connect to a name we could not check)."""
    # The transport's own pool, replaced at once, is given the shared context too: not a
    # bundle loaded for nothing.
    transport = httpx2.AsyncHTTPTransport(verify=ssl_context(), limits=POOL_LIMITS, trust_env=False)
    transport._pool = _guarded_pool(httpcore2.AsyncConnectionPool, _GuardedAsyncBackend())
    return httpx2.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)


def sync_http_client() -> httpx2.Client:
    """async_http_client for the sync SDK clients."""
    transport = httpx2.HTTPTransport(verify=ssl_context(), limits=POOL_LIMITS, trust_env=False)
    transport._pool = _guarded_pool(httpcore2.ConnectionPool, _GuardedSyncBackend())
    return httpx2.Client(transport=transport, follow_redirects=False, trust_env=False)
