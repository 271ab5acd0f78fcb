"""One JSON error shape for the whole API: ``{"code": …, "detail": …, …}`` with a stable code; and the pages.

Every error under ``/api/`` is JSON, whoever produced it: our views (``error_response``), DRF (the
``exception_handler`` below), Django itself (``handler400/403/404/500`` in ``wartiket/urls.py`` use the
views here) and the middleware (``wartiket.middleware.ApiErrorMiddleware`` for what none of those see).
Elsewhere the same errors are the branded pages ``templates/<status>.html``. Redis or PostgreSQL being
unavailable (``wartiket.outages.is_outage``) is a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.template import loader
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from queueing.services.errors import ERRORS, ReservationError
from wartiket.outages import is_outage

log = logging.getLogger(__name__)

API_PREFIX = "/api/"

DRF_CODES = {
    exceptions.ParseError: "malformed_json",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid",
}

# The code an error status gets when nothing more specific is known (Django's own 404, a proxy's 413…).
STATUS_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "server_error",
    503: "unavailable",
}


def is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def code_for_status(status_code: int) -> str:
    return STATUS_CODES.get(status_code) or ("server_error" if status_code >= 500 else "invalid")


def error_body(code: str, detail: str | None = None, **data) -> dict:
    return {"code": code, "detail": detail or str(ERRORS[code][1]), **data}


def error_response(
    code: str, *, detail: str | None = None, retry_after: int | None = None, status_code: int | None = None, **data
) -> Response:
    response = Response(error_body(code, detail, **data), status=status_code or ERRORS[code][0])
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def json_error(code: str, *, status_code: int | None = None, retry_after: int | None = None) -> JsonResponse:
    """The same body as ``error_response`` outside DRF (handlers, middleware)."""
    response = JsonResponse(
        error_body(code), status=status_code or ERRORS[code][0], json_dumps_params={"separators": (",", ":")}
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def reservation_error_response(exc: ReservationError) -> Response:
    return error_response(exc.code, retry_after=exc.retry_after, **exc.data)


def exception_handler(exc, context):
    if isinstance(exc, ReservationError):
        return reservation_error_response(exc)
    if is_outage(exc):
        log.warning("API outage answered 503: %r", exc)
        return error_response("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS)
    if isinstance(exc, RequestDataTooBig):
        # Over DATA_UPLOAD_MAX_MEMORY_SIZE: Django would call it a SuspiciousOperation and answer 400.
        return error_response("too_large")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's handler500 (server_error below) answers it
    code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), None)
    if isinstance(exc, exceptions.PermissionDenied):
        code = "csrf_failed" if "CSRF" in str(exc.detail) else "forbidden"
    if code is None:
        code = code_for_status(response.status_code)
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid", errors=response.data)
    elif isinstance(exc, exceptions.AuthenticationFailed):
        # Our authentication classes say what was wrong with the credentials (translated messages).
        response.data = error_body(code, str(exc.detail))
    else:
        # Our own translated message, not DRF's ("JSON parse error - Expecting value: line 1 …").
        response.data = error_body(code)
    return response


# --- Django's error handlers (``handler400`` … in wartiket/urls.py) and the CSRF failure view ---------------


def error_page(request, status_code: int, template: str, *, code: str | None = None):
    """JSON under /api/, the branded page elsewhere."""
    if is_api(request):
        return json_error(code or code_for_status(status_code), status_code=status_code)
    context = {"status_code": status_code, "code": code}
    try:
        body = loader.render_to_string(template, context, request=request)
    except Exception:
        # The error page must not fail in turn (a template using a backend that is down, say).
        log.exception("could not render %s", template)
        body = f"<!doctype html><title>{status_code}</title><h1>{status_code}</h1>"
    return HttpResponse(body, status=status_code)


def bad_request(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return error_page(request, 413, "400.html", code="too_large")
    return error_page(request, 400, "400.html")


def permission_denied(request, exception=None):
    return error_page(request, 403, "403.html")


def page_not_found(request, exception=None):
    return error_page(request, 404, "404.html")


def server_error(request):
    return error_page(request, 500, "500.html")


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: an expired form is the usual cause; say so in the site's language, not Django's."""
    if is_api(request):
        return json_error("csrf_failed")
    return error_page(request, 403, "403.html", code="csrf_failed")


# --- The error body in the OpenAPI schema ----------------------------------------------------------------


class OtherTicketSerializer(serializers.Serializer):
    code = serializers.CharField()
    slot_id = serializers.IntegerField()
    location = serializers.CharField(required=False)
    date = serializers.DateField(required=False)
    time_slot = serializers.CharField(required=False)


class ErrorSerializer(serializers.Serializer):
    """Every refusal: a stable ``code``, a message for people in the request's language, and extras."""

    code = serializers.ChoiceField(
        choices=sorted(ERRORS), help_text="Stable, machine-readable; see the list per status."
    )
    detail = serializers.CharField(help_text="For people, in the language of Accept-Language (id or en).")
    errors = serializers.JSONField(required=False, help_text="`invalid`: what is wrong with which field.")
    opens_at = serializers.DateTimeField(required=False, help_text="`too_early`: when the war opens.")
    closed_at = serializers.DateTimeField(required=False, help_text="`closed`: when the war closed.")
    server_time = serializers.DateTimeField(required=False, help_text="`too_early`, `closed`: the deciding clock.")
    remaining = serializers.IntegerField(required=False, help_text="`sold_out`: 0.")
    ticket = OtherTicketSerializer(required=False, help_text="`one_per_day`: the ticket already held that day.")
    status = serializers.CharField(required=False, help_text="`not_cancellable`: the ticket's status.")


def error_responses(*codes: str) -> dict[int, OpenApiResponse]:
    """OpenAPI responses for these error codes, grouped by their status in the one table (``ERRORS``)."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERRORS[code][0], []).append(code)
    return {
        status_code: OpenApiResponse(ErrorSerializer, description="`code`: " + " / ".join(f"`{c}`" for c in listed))
        for status_code, listed in sorted(by_status.items())
    }
