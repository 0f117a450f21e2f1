"""Websocket routes. The live-streaming issue adds /ws/stream/ and /ws/requests/."""

websocket_urlpatterns: list = []
