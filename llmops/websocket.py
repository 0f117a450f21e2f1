"""Origin checks for websockets.

Browsers always send `Origin` on a websocket handshake, and a page on another site could
otherwise ride the visitor's session cookie (cross-site websocket hijacking), so an Origin
that is present must be one of ALLOWED_HOSTS. Programs send none; they must authenticate with
an API key instead of a cookie, which routing.consumers enforces.
"""

from __future__ import annotations

from channels.security.websocket import OriginValidator


class BrowserOriginValidator(OriginValidator):
    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)
