"""ASGI entry point: HTTP through Django (the serving endpoints through llmops.serving),
websockets through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
# Build the Django app first: the websocket routes below import consumers, which import models,
# and models cannot be imported before Django is set up (AppRegistryNotReady).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from llmops import netread, netwrite  # noqa: E402
from llmops.routing import websocket_urlpatterns  # noqa: E402
from llmops.serving import ServingRouter  # noqa: E402
from llmops.websocket import HandshakeValidator, bound_daphne_sockets  # noqa: E402

# daphne imports this module before it builds its server: the bounds apply to that server.
bound_daphne_sockets(max_message_bytes=settings.LLMOPS_WS_MAX_MESSAGE_BYTES)
# Its writes sent on the loop's next turn, not after a round trip through epoll (a stream's
# every token is one).
netwrite.install()
# Request bodies parsed once, by Django, not first by twisted for nothing.
netread.install()

application = ProtocolTypeRouter(
    {
        "http": ServingRouter(django_asgi_app),
        "websocket": HandshakeValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# The start-up heap (Django, DRF, Channels, the provider SDKs and their pydantic types: about
# 300,000 objects the cyclic collector tracks) lives as long as the process. Left in the
# collector's oldest generation, every full collection walked all of it: 150-350 ms with the
# GIL held, in which no stream's frame was relayed (M3: at 200 concurrent streams every one
# stalled). Frozen, a full collection walks only what requests made (20-50 ms). Frozen objects
# are still freed when their last reference goes; only the cycle search skips them.
gc.collect()
gc.freeze()
