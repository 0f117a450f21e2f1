"""ASGI entry point: HTTP through Django (the serving endpoints through llmops.serving),
websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
# Build the Django app before importing anything that touches models (platform-notes).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from llmops.routing import websocket_urlpatterns  # noqa: E402
from llmops.serving import ServingRouter  # noqa: E402
from llmops.websocket import BrowserOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": ServingRouter(django_asgi_app),
        "websocket": BrowserOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns)), settings.ALLOWED_HOSTS
        ),
    }
)
