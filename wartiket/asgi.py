"""ASGI entry point: HTTP through Django, WebSockets through Channels (daphne serves both)."""

import http
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wartiket.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from wartiket.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)


def _complete_twisted_reason_phrases() -> None:
    """daphne writes the status line with Twisted's table of reason phrases, which lacks 429 and a dozen
    newer codes: a rate-limited buyer got "429 Unknown Status". ASGI carries no reason phrase, so the
    missing ones are filled in from Python's (the same table Django's reason_phrase uses under WSGI).
    """
    try:
        from twisted.web import http as twisted_http
    except ImportError:  # another ASGI server
        return
    for status in http.HTTPStatus:
        twisted_http.RESPONSES.setdefault(status.value, status.phrase.encode())


_complete_twisted_reason_phrases()
