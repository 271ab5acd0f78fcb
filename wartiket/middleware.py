"""Outages become a 503 with Retry-After on every page, never a 500; API errors are JSON; the language.

What an outage is: ``wartiket.outages.is_outage`` (the one definition).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.middleware.locale import LocaleMiddleware
from django.template.response import SimpleTemplateResponse
from django.utils import translation
from django.utils.translation import trans_real

from wartiket.api_errors import code_for_status, error_page, is_api, json_error
from wartiket.outages import is_outage

log = logging.getLogger(__name__)

# Longest path + query string we answer: real URLs of this site are under 200 bytes. Far below what the web
# server itself accepts, so the JSON 414 is what clients see; daphne has no limit of its own.
MAX_URI_BYTES = 2048

# Headers an error answer keeps when the middleware turns it into JSON.
KEPT_HEADERS = ("Retry-After", "Allow", "WWW-Authenticate", "Vary")


class ServiceUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_outage(exception):
            return None
        return outage_response(request, exception)


def outage_response(request, exception):
    log.warning("outage answered 503 on %s: %r", request.path, exception)
    if is_api(request):
        response = json_error("unavailable")
    else:
        response = SimpleTemplateResponse("503.html", status=503).render()
    response["Retry-After"] = str(settings.WAR_RETRY_AFTER_SECONDS)
    # Also when the locale middleware's response phase has already run (the session save comes after it).
    response.headers.setdefault("Content-Language", translation.get_language() or settings.LANGUAGE_CODE)
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
        except Exception as exc:
            if not is_outage(exc):
                raise
            return outage_response(request, exc)


class IndonesianFirstLocaleMiddleware(LocaleMiddleware):
    """Pages: Indonesian unless the visitor chose another language with the switcher (cookie).
    API: the client's Accept-Language, else Indonesian.

    Many buyers' phones are set to English; the site still speaks Indonesian to them until they ask. An
    API client has no switcher: Accept-Language is how it asks. (The war page's script shows its own
    messages by ``code``, so an English browser header never mixes English into an Indonesian page.)
    """

    def process_request(self, request):
        if is_api(request):
            language = accepted_language(request.META.get("HTTP_ACCEPT_LANGUAGE", ""))
        else:
            chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
            language = chosen if chosen and translation.check_for_language(chosen) else settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()


def accepted_language(header: str) -> str:
    """The first of the client's languages (by preference) that we speak, else the site's own."""
    for tag, _quality in trans_real.parse_accept_lang_header(header):
        if tag == "*":
            break
        try:
            return translation.get_supported_language_variant(tag)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


class ApiErrorMiddleware:
    """Under /api/, every error is JSON with a stable ``code``, including those no handler of ours made.

    Django's own handlers are ours (``handler404`` … in wartiket/urls.py), but with DEBUG on Django
    answers 404s and 400s with its technical HTML pages instead, and an over-long URI reaches no view at
    all. Sits inside the locale middleware, so these answers speak the request's language too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if len(request.get_full_path().encode()) > MAX_URI_BYTES:
            return error_page(request, 414, "400.html")
        response = self.get_response(request)
        if (
            is_api(request)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
            # DEBUG's traceback page is what a developer needs; production 500s come from handler500 as JSON.
            and not (settings.DEBUG and response.status_code >= 500)
        ):
            replacement = json_error(code_for_status(response.status_code), status_code=response.status_code)
            for header in KEPT_HEADERS:
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response
