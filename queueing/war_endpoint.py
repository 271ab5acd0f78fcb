"""POST /api/war: the one war endpoint, answered before Django's request cycle.

In a war, tens of thousands of attempts a second reach this one URL, and nearly all of them are refused
(sold out, too early, rate limited). Django's handler, middleware and request/response objects cost a
refused attempt more than the attempt itself (docs/benchmarks.md), so production serves the path with
``application`` below, a plain WSGI application that ``wartiket.wsgi`` mounts in front of Django. It does
exactly what the endpoint needs and nothing else:

- the caller: ``Authorization: Token <key>``, or a session cookie with Django's CSRF check (sessions only:
  a token is no ambient credential); both from the identity cache, never PostgreSQL;
- the language of the answer from Accept-Language (the API's rule, ``accepted_language``);
- the body: JSON, at most ``WAR_MAX_BODY`` bytes, checked by ``war_fields``;
- ``reservations.reserve``, whose outcome becomes the answer in the API's error shape;
- the headers Django's security middleware and the locale middleware would add;
- an outage of Redis or PostgreSQL: 503 with Retry-After; anything else: a logged 500, both JSON.

``attempt`` is the endpoint itself, independent of how the request arrived; ``queueing.api.war`` serves
the same function through Django (the test client, ``make run``'s ASGI server) so there is one war path.
A request the fast path should not answer itself (another method, an over-long query string, plain HTTP
when HTTPS is required) goes to Django whole, which answers it as for any URL.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import import_module

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import setting_changed
from django.db import DatabaseError, connections
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.utils.encoders import JSONEncoder

from accounts.auth import INVALID_TOKEN, token_from_meta
from accounts.services import identity
from accounts.services.identity import Principal
from queueing.models import TIME_LABEL_RE
from queueing.services import reservations, warroom
from queueing.services.errors import ERRORS, SUCCESS_STATUS, ReservationError
from wartiket.api_errors import error_body
from wartiket.http import client_ip_from
from wartiket.middleware import MAX_URI_BYTES, SessionMiddleware, accepted_language
from wartiket.outages import is_outage

log = logging.getLogger(__name__)
request_log = logging.getLogger("django.request")  # where Django logs a 500, so monitoring sees ours too

PATH = "/api/war"
# The war body is ~80 bytes; anything much larger is refused before it is read.
WAR_MAX_BODY = 4096

# --- the body ----------------------------------------------------------------------------------------------
# Checked here, not by DRF's serializer: ``WarRequestSerializer`` only describes the body in the OpenAPI
# schema, and a test feeds both the same edge cases.

_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}\Z")
REQUIRED = _("Wajib diisi.")
FIELD_MESSAGES = {
    "location_id": _("Harus berupa kode lokasi: huruf, angka, - atau _, paling banyak 64 karakter."),
    "time_slot": _("Jam harus berformat HH:MM, misalnya 10:00."),
    "date": _("Tanggal harus berformat YYYY-MM-DD."),
    "user_id": _("Harus berupa teks atau bilangan bulat."),
}
NOT_AN_OBJECT = _("Isi permintaan harus berupa objek JSON.")


def war_fields(data) -> tuple[dict, dict]:
    """The war body's fields, and what is wrong with which (empty when valid). The schema: WarRequestSerializer."""
    if not isinstance(data, dict):
        return {}, {"non_field_errors": [str(NOT_AN_OBJECT)]}
    fields: dict = {}
    errors: dict = {}
    for name in ("location_id", "time_slot"):
        if name not in data:
            errors[name] = [str(REQUIRED)]
    location, label = data.get("location_id"), data.get("time_slot")
    if "location_id" in data and not (isinstance(location, str) and _SLUG.match(location)):
        errors["location_id"] = [str(FIELD_MESSAGES["location_id"])]
    if "time_slot" in data and not (isinstance(label, str) and len(label) == 5 and TIME_LABEL_RE.match(label)):
        errors["time_slot"] = [str(FIELD_MESSAGES["time_slot"])]
    if "date" in data:
        try:
            fields["date"] = datetime.date.fromisoformat(data["date"])
        except (TypeError, ValueError):
            errors["date"] = [str(FIELD_MESSAGES["date"])]
    if "user_id" in data:
        user_id = data["user_id"]
        if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
            errors["user_id"] = [str(FIELD_MESSAGES["user_id"])]
        else:
            # Accepted for compatibility with the seed's curl; must name the caller, never someone else.
            fields["user_id"] = str(user_id)
    fields.update(location_id=location, time_slot=label)
    return fields, errors


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# One decoder for every body: ``json.loads`` with a hook builds a new one per call.
_decoder = json.JSONDecoder(parse_constant=_no_constant)


def parse_body(body: bytes):
    """``json.loads(body)`` without NaN/Infinity; ValueError if it is not JSON (any UTF the way json finds it)."""
    return _decoder.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


# --- the answer --------------------------------------------------------------------------------------------


@dataclass
class Answer:
    """What the endpoint answers: a status, a JSON body and the headers only this answer has."""

    status: int
    body: dict
    headers: list[tuple[str, str]] = field(default_factory=list)

    def content(self) -> bytes:
        # DRF's encoder and compact form: the same bytes as every other API answer (dates, decimals).
        return json.dumps(self.body, cls=JSONEncoder, ensure_ascii=False, separators=(",", ":")).encode()

    def response(self) -> HttpResponse:
        response = HttpResponse(self.content(), status=self.status, content_type="application/json")
        for name, value in self.headers:
            response[name] = value
        return response


# Translated refusal messages by (code, language): resolving the lazy text cost each refusal a catalog lookup.
_details: dict[tuple[str, str], str] = {}


def _detail(code: str) -> str:
    key = (code, translation.get_language())
    text = _details.get(key)
    if text is None:
        text = _details[key] = str(ERRORS[code][1])
    return text


def refusal(code: str, *, detail: str | None = None, retry_after: int | None = None, counted=False, **data) -> Answer:
    """A war refusal in the API's error shape, counted in the war room unless reserve.lua counted it."""
    if not counted:
        warroom.count_error(code)
    answer = Answer(ERRORS[code][0], error_body(code, detail or _detail(code), **data))
    if retry_after is not None:
        answer.headers.append(("Retry-After", str(retry_after)))
    return answer


def _unauthenticated(detail: str | None = None) -> Answer:
    answer = refusal("not_authenticated", detail=detail)
    answer.headers.append(("WWW-Authenticate", "Token"))
    return answer


def outage(exc: BaseException) -> Answer:
    log.warning("outage answered 503 on %s: %r", PATH, exc)
    return refusal("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS, counted=True)


# --- the endpoint ------------------------------------------------------------------------------------------


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check as a function: the reason a request fails it, or None (as DRF's sessions do)."""

    def _reject(self, request, reason):
        return reason


def csrf_refused(request) -> bool:
    check = _CsrfCheck(lambda _request: None)
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None


def _caller(meta: dict, session_request: Callable[[], HttpRequest]) -> Principal | Answer:
    """Who is calling, from the identity cache (no PostgreSQL), or the refusal to send."""
    try:
        raw = token_from_meta(meta)
    except AuthenticationFailed as exc:
        return _unauthenticated(str(exc.detail))
    if raw is not None:
        principal = identity.principal_for_token(raw)
        return principal if principal is not None else _unauthenticated(str(INVALID_TOKEN))
    request = session_request()
    principal = identity.principal_for_session(request.session)
    if principal is None:
        return _unauthenticated()
    if csrf_refused(request):
        return refusal("csrf_failed")
    return principal


def attempt(meta: dict, read_body: Callable[[], bytes], session_request: Callable[[], HttpRequest]) -> Answer:
    """One POST /api/war. ``meta``: the WSGI environ (Django's ``request.META``); ``read_body``: the body;
    ``session_request``: a Django request carrying ``session``, made only for a caller without a token.

    Outages raise (each caller answers them with ``outage``), counted in the war room first.
    """
    try:
        length = meta.get("CONTENT_LENGTH") or "0"
        too_large = not length.isdigit() or int(length) > WAR_MAX_BODY
        # Read before the caller is known: a session caller's CSRF check parses a form-encoded body, after
        # which Django could no longer give the body itself (RawPostDataException, a 500).
        body = b"" if too_large else read_body()
        caller = _caller(meta, session_request)
        if isinstance(caller, Answer):
            return caller
        if too_large:
            return refusal("too_large")
        if not body:
            data = {}  # as DRF: an empty body is an empty object, refused below for its missing fields
        elif meta.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != "application/json":
            return refusal("unsupported_media_type")
        else:
            try:
                data = parse_body(body)
            except (ValueError, RecursionError):
                # Malformed, not UTF-8, NaN/Infinity, or nested deeper than Python's recursion limit.
                return refusal("malformed_json")
        fields, errors = war_fields(data)
        if errors:
            return refusal("invalid", errors=errors)
        if "user_id" in fields and fields["user_id"] != str(caller.id):
            return refusal("user_mismatch")
        try:
            result = reservations.reserve(
                caller,
                fields["location_id"],
                fields["time_slot"],
                fields.get("date"),
                client_ip=client_ip_from(meta),
                bypass_key=meta.get("HTTP_X_WAR_BYPASS"),
                proof=meta.get("HTTP_X_ALTCHA"),
                fault=meta.get("HTTP_X_WAR_FAULT") if settings.WAR_FAULT_INJECTION else None,
            )
        except ReservationError as exc:
            # Most attempts in a war end here.
            return refusal(exc.code, retry_after=exc.retry_after, counted=exc.counted, **exc.data)
        return Answer(SUCCESS_STATUS[result.outcome], result.body())
    except Exception as exc:
        warroom.count_error("unavailable" if is_outage(exc) else "server_error")
        raise


# --- served without Django's handler ----------------------------------------------------------------------

_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
_languages: dict[str, str] = {}  # Accept-Language header → language; a few distinct headers in practice
_LANGUAGES_MAX = 1024


def _language(header: str) -> str:
    language = _languages.get(header)
    if language is None:
        if len(_languages) >= _LANGUAGES_MAX:
            _languages.clear()
        language = _languages[header] = accepted_language(header)
    return language


def _is_secure(environ: dict) -> bool:
    """``HttpRequest.is_secure`` on the environ: the proxy's header when one is configured, else the scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = environ.get(header)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return environ.get("wsgi.url_scheme") == "https"


class _Secured:
    def __init__(self, secure: bool):
        self.secure = secure

    def is_secure(self) -> bool:
        return self.secure


_security: dict[bool, list[tuple[str, str]]] = {}


@receiver(setting_changed)
def _settings_changed(**kwargs) -> None:
    # Tests that change the security or language settings.
    _security.clear()
    _languages.clear()


def _security_headers(secure: bool) -> list[tuple[str, str]]:
    """What Django's SecurityMiddleware adds to an answer (HSTS, nosniff, referrer, COOP), asked of it once."""
    headers = _security.get(secure)
    if headers is None:
        response = SecurityMiddleware(lambda _request: None).process_response(_Secured(secure), HttpResponse())
        headers = _security[secure] = [
            (name, value) for name, value in response.items() if name not in HttpResponse().headers
        ]
    return headers


class _SessionRequest:
    """The Django request a session caller needs (its cookie's session, the CSRF check), built on demand."""

    def __init__(self, environ: dict):
        self.environ = environ
        self.request: WSGIRequest | None = None

    def __call__(self) -> WSGIRequest:
        if self.request is None:
            request = WSGIRequest(self.environ)
            # What SessionMiddleware does first; the war never changes the session, so nothing is saved.
            store = import_module(settings.SESSION_ENGINE).SessionStore
            request.session = store(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
            self.request = request
        return self.request


_VARY = [("Vary", "Accept-Language")]

# How long a thread's database connection stays trusted between two war attempts without a health check.
HEALTH_CHECK_EVERY = 1.0
_health = threading.local()


def _finish_database() -> None:
    """What Django's ``request_finished`` does (``close_old_connections``: a broken or too old connection is
    closed), except that a connection health-checked within the last ``HEALTH_CHECK_EVERY`` is trusted by
    the next attempt without another check.

    With ``CONN_HEALTH_CHECKS`` Django checks a connection (a ``SELECT 1`` round trip) at its first use in
    every request. In an opening storm a thread commits a ticket every few milliseconds, and the check was
    a fifth of a reservation's CPU (docs/benchmarks.md). Once a second per thread still catches a
    connection PostgreSQL dropped while it sat idle; one it drops in between fails the INSERT, which the
    reservation already treats as an outage (the seat is released or held for reconcile, the buyer hears
    503 and retries), never as a ticket.
    """
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        trusted = conn.health_check_done and now - getattr(_health, conn.alias, 0.0) < HEALTH_CHECK_EVERY
        conn.close_if_unusable_or_obsolete()  # resets health_check_done: the next use checks the connection
        if conn.connection is None:
            continue
        if trusted:
            conn.health_check_done = True
        else:
            setattr(_health, conn.alias, now)  # checked at its next use, from now on trusted for a while


def _session_headers(request: WSGIRequest) -> list[tuple[str, str]]:
    """What Django's session middleware adds for a session caller: ``Vary: Cookie``, and the cookie's removal
    when it named no session. Asked of the middleware itself (the war never changes a session: no save)."""
    response = HttpResponse()
    response["Vary"] = "Accept-Language"
    response = SessionMiddleware(lambda _request: None).process_response(request, response)
    return [
        *((name, value) for name, value in response.items() if name == "Vary"),
        *(("Set-Cookie", cookie.output(header="")) for cookie in response.cookies.values()),
    ]


def serves(environ: dict) -> bool:
    """Whether ``application`` answers this request itself (else Django does, as for any URL)."""
    return (
        environ.get("REQUEST_METHOD") == "POST"
        and environ.get("PATH_INFO") == PATH
        and len(environ.get("QUERY_STRING", "")) < MAX_URI_BYTES - len(PATH)
        and not (settings.SECURE_SSL_REDIRECT and not _is_secure(environ))
    )


def application(environ: dict, start_response):
    """POST /api/war as a WSGI application (``serves`` must be true of the request)."""
    language = _language(environ.get("HTTP_ACCEPT_LANGUAGE", ""))
    translation.activate(language)
    session_request = _SessionRequest(environ)

    def read_body() -> bytes:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        return environ["wsgi.input"].read(length) if length else b""

    try:
        answer = attempt(environ, read_body, session_request)
    except Exception as exc:
        if is_outage(exc):
            answer = outage(exc)
            request_log.error("Service Unavailable: %s", PATH, extra={"status_code": 503})
        else:
            request_log.error("Internal Server Error: %s", PATH, exc_info=True, extra={"status_code": 500})
            answer = Answer(500, error_body("server_error"))
    finally:
        try:
            _finish_database()
        except DatabaseError:  # closing a connection PostgreSQL already dropped: the answer stands
            log.warning("war endpoint: closing a broken database connection failed", exc_info=True)
    content = answer.content()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(content))),
        *answer.headers,
        *(_session_headers(session_request.request) if session_request.request is not None else _VARY),
        ("Content-Language", language),
        *_security_headers(_is_secure(environ)),
    ]
    start_response(_STATUS_LINES[answer.status], headers)
    return [content]
