"""The WSGI application: POST /api/war answered before Django, everything else by Django.

During a war, thousands of attempts a second hit one endpoint. Django's handler and middleware cost a
refused attempt more than the attempt itself (docs/benchmarks.md), so ``queueing.war_endpoint`` answers
that path as a plain WSGI application: the same ``attempt`` function Django's view ``queueing.api.war``
serves (the test client, ``make run``'s ASGI server), with the headers the middleware would add.
Every other request, and a war request the endpoint leaves to Django (``war_endpoint.serves``), goes
through Django's handler and its full middleware.
"""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wartiket.settings")
django_application = get_wsgi_application()

from queueing import war_endpoint  # noqa: E402 (needs the apps that get_wsgi_application sets up)


def application(environ, start_response):
    if war_endpoint.serves(environ):
        return war_endpoint.application(environ, start_response)
    return django_application(environ, start_response)


# Load the URLconf (and the imports behind it) when the worker boots, not on a buyer's first request.
get_resolver().url_patterns  # noqa: B018
