"""Outages of Redis or PostgreSQL become a 503 with Retry-After on every page, never a 500."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import JsonResponse
from django.middleware.locale import LocaleMiddleware
from django.template.response import SimpleTemplateResponse
from django.utils import translation

from wartiket.api_errors import OUTAGES

log = logging.getLogger(__name__)


class ServiceUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OUTAGES):
            return None
        return outage_response(request, exception)


def outage_response(request, exception):
    log.warning("outage answered 503 on %s: %r", request.path, exception)
    if request.path.startswith("/api/"):
        response = JsonResponse({"code": "unavailable", "detail": "Service busy, retry in a few seconds."}, status=503)
    else:
        response = SimpleTemplateResponse("503.html", status=503).render()
    response["Retry-After"] = str(settings.WAR_RETRY_AFTER_SECONDS)
    return response


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, except that a session store (Redis) outage while saving is a 503, not a 500.

    The save runs after the view, where process_exception no longer applies: Django would turn the
    error into its 500 page. Reading a session never raises (the cache backend treats a failed read
    as an empty session), so this is the one place left.
    """

    def process_response(self, request, response):
        try:
            return super().process_response(request, response)
        except OUTAGES as exc:
            return outage_response(request, exc)


class IndonesianFirstLocaleMiddleware(LocaleMiddleware):
    """Indonesian unless the visitor chose another language with the switcher (cookie).

    Many buyers' phones are set to English; the site still speaks Indonesian to them until they ask.
    """

    def process_request(self, request):
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
        language = chosen if chosen and translation.check_for_language(chosen) else settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
