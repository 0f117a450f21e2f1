"""ASGI entry point: HTTP through Django (the serving endpoints through llmops.serving),
websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
# Build the Django app first: the websocket routes below import consumers, which import models,
# and models cannot be imported before Django is set up (AppRegistryNotReady).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from llmops.routing import websocket_urlpatterns  # noqa: E402
from llmops.serving import ServingRouter  # noqa: E402
from llmops.websocket import HandshakeValidator, bound_daphne_sockets  # noqa: E402

# daphne imports this module before it builds its server: the bounds apply to that server.
bound_daphne_sockets(max_message_bytes=settings.LLMOPS_WS_MAX_MESSAGE_BYTES)

application = ProtocolTypeRouter(
    {
        "http": ServingRouter(django_asgi_app),
        "websocket": HandshakeValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
