"""One JSON error shape for the whole API: ``{"code": …, "detail": …, …}`` with a stable code.

Redis or PostgreSQL being unreachable is a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from queueing.services.errors import ERRORS, ReservationError

log = logging.getLogger(__name__)

OUTAGES = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OperationalError, InterfaceError)

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


def error_response(
    code: str, *, detail: str | None = None, retry_after: int | None = None, status_code: int | None = None, **data
) -> Response:
    body = {"code": code, "detail": detail or str(ERRORS[code][1]), **data}
    response = Response(body, status=status_code or ERRORS[code][0])
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def reservation_error_response(exc: ReservationError) -> Response:
    return error_response(exc.code, retry_after=exc.retry_after, **exc.data)


def exception_handler(exc, context):
    if isinstance(exc, ReservationError):
        return reservation_error_response(exc)
    if isinstance(exc, OUTAGES) or (isinstance(exc, DatabaseError) and not settings.DEBUG):
        log.warning("API outage answered 503: %r", exc)
        return error_response("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), None)
    if isinstance(exc, exceptions.PermissionDenied):
        code = "csrf_failed" if "CSRF" in str(exc.detail) else "forbidden"
    if code is None:
        code = "invalid" if response.status_code == status.HTTP_400_BAD_REQUEST else "forbidden"
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"code": "invalid", "detail": str(ERRORS["invalid"][1]), "errors": response.data}
    else:
        response.data = {"code": code, "detail": str(exc.detail) if hasattr(exc, "detail") else str(exc)}
    return response
