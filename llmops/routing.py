"""Websocket routes: live completions and request notifications (routing.consumers)."""

from django.urls import path

from routing import consumers

websocket_urlpatterns = [
    path("ws/stream/", consumers.StreamConsumer.as_asgi()),
    path("ws/requests/", consumers.RequestsConsumer.as_asgi()),
]
