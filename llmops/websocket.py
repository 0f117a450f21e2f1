"""Handshake checks for websockets: the Host and the Origin, as Django checks them over HTTP.

Browsers always send `Origin` on a websocket handshake, and any page the browser shows could
otherwise ride the visitor's session cookie (cross-site websocket hijacking). So an Origin that
is present must pass the HTTP CSRF check's own origin test (`CsrfViewMiddleware`): the same
scheme, host and port as the handshake (ws→http, wss→https, or https through
SECURE_PROXY_SSL_HEADER behind a TLS proxy), or one of CSRF_TRUSTED_ORIGINS (wildcard
subdomains included). Comparing the host alone let a page on another port of the same host
read another team's prompts. The Host must be one of ALLOWED_HOSTS, as for every HTTP request.

Programs send no Origin; they must authenticate with an API key instead of a cookie, which
routing.consumers enforces.
"""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware


class HandshakeRequest(HttpRequest):
    """Just enough of an HttpRequest, built from a websocket scope, for Django's host and
    origin checks."""

    def __init__(self, scope: dict) -> None:
        super().__init__()
        self.ws_scheme = scope.get("scheme", "ws")
        server_name, server_port = scope.get("server") or ("unknown", "0")
        self.META = {"SERVER_NAME": server_name, "SERVER_PORT": str(server_port)}
        for name, value in scope.get("headers") or []:
            key = "HTTP_" + name.decode("latin1").upper().replace("-", "_")
            text = value.decode("latin1")
            # Repeated headers are joined, as Django's ASGI handler does.
            self.META[key] = f"{self.META[key]},{text}" if key in self.META else text

    def _get_scheme(self) -> str:
        # HttpRequest.scheme consults SECURE_PROXY_SSL_HEADER first, then this.
        return "https" if self.ws_scheme == "wss" else "http"


def handshake_allowed(scope: dict) -> bool:
    request = HandshakeRequest(scope)
    try:
        request.get_host()
    except DisallowedHost:
        return False
    if "HTTP_ORIGIN" not in request.META:
        return True
    # The very test CSRF protection applies to an HTTP POST with an Origin, so a websocket
    # and a form agree on which pages may use the session.
    return CsrfViewMiddleware(lambda request: None)._origin_verified(request)


class HandshakeValidator:
    """ASGI middleware: refuses (403) a websocket handshake whose Host or Origin fails."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not handshake_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


# Messages daphne may hold for one socket before the consumer has read them. daphne reads a
# socket as fast as the client writes and queues every message without bound, so a client
# outrunning its consumer (the rate limit answers each message, but answering takes time)
# grew the server by gigabytes. Past this many the connection is failed (1008).
MAX_QUEUED_MESSAGES = 32


def bound_daphne_sockets(*, max_message_bytes: int) -> None:
    """Bound what daphne buffers per websocket, when running under daphne: autobahn refuses a
    frame or message over `max_message_bytes` as its header arrives (1009), before buffering
    it, and a socket with MAX_QUEUED_MESSAGES unread is failed (1008). daphne has no option for
    either, so its factory and protocol are wrapped; the consumers check sizes and rates
    again (routing.consumers) for any other server."""
    import sys

    if "daphne.server" not in sys.modules:
        return
    from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

    if getattr(WebSocketFactory, "llmops_bounded", False):
        return
    factory_init = WebSocketFactory.__init__
    on_message = WebSocketProtocol.onMessage

    def __init__(self, *args, **kwargs):
        factory_init(self, *args, **kwargs)
        self.setProtocolOptions(
            maxFramePayloadSize=max_message_bytes,
            maxMessagePayloadSize=max_message_bytes,
            # Tell the client why (1009) instead of dropping the TCP connection; the rest of
            # the refused frame is read and discarded, not buffered.
            failByDrop=False,
        )

    def onMessage(self, payload, isBinary):
        if self.state != WebSocketProtocol.STATE_OPEN:
            return  # closing: nothing more reaches the consumer
        queue = getattr(self, "application_queue", None)
        if queue is not None and queue.qsize() >= MAX_QUEUED_MESSAGES:
            # sendClose() accepts only 1000 and 3000-4999; the frame itself may carry 1008.
            self.sendCloseFrame(code=1008, reasonUtf8=b"too many unread messages")
            return
        on_message(self, payload, isBinary)

    WebSocketFactory.__init__ = __init__
    WebSocketProtocol.onMessage = onMessage
    WebSocketFactory.llmops_bounded = True
