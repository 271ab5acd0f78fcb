"""The WSGI application: Django, with POST /api/war through a shorter middleware chain.

During a war, thousands of attempts a second hit one endpoint whose view (``queueing.api.war``) does its
own authentication, CSRF check and JSON answers. Measured, Django's full middleware stack is a large part
of a refused attempt's cost (docs/benchmarks.md); ``WarHandler`` is Django's own WSGI handler (signals,
connection handling, URL resolution, exception handling all unchanged) loaded with
``settings.WAR_MIDDLEWARE`` instead of ``settings.MIDDLEWARE``. Everything else, /api/war's other methods
included, goes through the full stack.
"""

import os

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wartiket.settings")
django_application = get_wsgi_application()

WAR_PATH = "/api/war"


class WarHandler(WSGIHandler):
    """Django's WSGI handler whose middleware chain is ``settings.WAR_MIDDLEWARE``."""

    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swap it for the one call, at boot, before any thread runs.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.WAR_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


war_application = WarHandler()


def application(environ, start_response):
    if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == WAR_PATH:
        return war_application(environ, start_response)
    return django_application(environ, start_response)


# Load the URLconf (and the ~2 s of imports behind it) when the worker boots, not on a buyer's first request.
get_resolver().url_patterns  # noqa: B018
