"""The JSON API. Views parse, call one service, and answer; the rules live in ``services/``."""

from __future__ import annotations

import datetime
import json
import re

from django.conf import settings
from django.http import HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import INVALID_TOKEN, CachedSessionAuthentication, CachedTokenAuthentication, token_from_header
from accounts.services import identity
from accounts.services.identity import Principal
from queueing.models import CODE_ALPHABET, TIME_LABEL_RE, Slot
from queueing.serializers import (
    CancelResultSerializer,
    DrawSerializer,
    SlotSerializer,
    TicketSerializer,
    WarEntrySerializer,
    WarRequestSerializer,
    WarResultSerializer,
)
from queueing.services import clock, draws, pages, quota, reservations, warroom
from queueing.services.errors import ERRORS, SUCCESS_STATUS, ReservationError
from queueing.services.store import ms_to_datetime
from wartiket.api_errors import error_body, error_response, error_responses
from wartiket.http import client_ip
from wartiket.outages import is_outage

# The war body is ~80 bytes; anything much larger is refused before it is read.
WAR_MAX_BODY = 4096

# A ticket code as ``new_ticket_code`` prints it, XXXX-XXXX-XXXX in Crockford base32 (URLs and schema).
TICKET_CODE_PATTERN = "-".join([f"[{CODE_ALPHABET}]{{4}}"] * 3)

# --- POST /api/war ----------------------------------------------------------------------------------------
#
# A plain Django view, not DRF: tens of thousands of attempts a second are refused here, and DRF's request
# cycle (request wrapping, negotiation, parsers, permission and exception machinery, the serializer) cost
# about a fifth of each (docs/benchmarks.md). It does only what the endpoint needs, for token and session
# callers alike: authenticate from the identity cache, CSRF for sessions, read and check the body, and
# answer with the API's JSON error shape (``wartiket/api_errors.py``). ``WarView`` below describes it in
# the OpenAPI schema; it is never routed.

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


_JSON = JSONRenderer()

# Translated refusal messages by (code, language): resolving the lazy text cost each refusal a catalog lookup.
_details: dict[tuple[str, str], str] = {}


def _detail(code: str) -> str:
    key = (code, translation.get_language())
    text = _details.get(key)
    if text is None:
        text = _details[key] = str(ERRORS[code][1])
    return text


def json_answer(body: dict, status: int, *, retry_after: int | None = None) -> HttpResponse:
    # DRF's renderer only to encode: the same bytes the rest of the API sends (dates, compact separators).
    response = HttpResponse(_JSON.render(body), status=status, content_type="application/json")
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def refusal(code: str, *, detail: str | None = None, retry_after: int | None = None, counted=False, **data):
    """A war refusal in the API's error shape, counted in the war room unless reserve.lua counted it."""
    if not counted:
        warroom.count_error(code)
    return json_answer(error_body(code, detail or _detail(code), **data), ERRORS[code][0], retry_after=retry_after)


def war_answer(request, principal, data: dict) -> HttpResponse:
    """One war attempt with validated fields: the one bridge between HTTP and ``reservations.reserve``."""
    if "user_id" in data and data["user_id"] != str(principal.id):
        return refusal("user_mismatch")
    try:
        result = reservations.reserve(
            principal,
            data["location_id"],
            data["time_slot"],
            data.get("date"),
            client_ip=client_ip(request),
            # META, not request.headers: building the headers mapping costs every attempt more than both reads.
            bypass_key=request.META.get("HTTP_X_WAR_BYPASS"),
            proof=request.META.get("HTTP_X_ALTCHA"),
            fault=request.META.get("HTTP_X_WAR_FAULT") if settings.WAR_FAULT_INJECTION else None,
        )
    except ReservationError as exc:
        # Most attempts in a war end here.
        return refusal(exc.code, retry_after=exc.retry_after, counted=exc.counted, **exc.data)
    return json_answer(result.body(), SUCCESS_STATUS[result.outcome])


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check as a function: the reason a request fails it, or None (as DRF's sessions do)."""

    def _reject(self, request, reason):
        return reason


def csrf_refused(request) -> bool:
    check = _CsrfCheck(lambda _request: None)
    check.process_request(request)
    return check.process_view(request, None, (), {}) is not None


def _caller(request) -> Principal | HttpResponse:
    """Who is calling, from the identity cache (no PostgreSQL), or the refusal to send."""
    try:
        raw = token_from_header(request)
    except AuthenticationFailed as exc:
        return _unauthenticated(str(exc.detail))
    if raw is not None:
        principal = identity.principal_for_token(raw)
        return principal if principal is not None else _unauthenticated(str(INVALID_TOKEN))
    principal = identity.principal_for_session(request.session)
    if principal is None:
        return _unauthenticated()
    # A token is no ambient credential, a session cookie is: only sessions are checked, as DRF does.
    if csrf_refused(request):
        return refusal("csrf_failed")
    return principal


def _unauthenticated(detail: str | None = None) -> HttpResponse:
    response = refusal("not_authenticated", detail=detail)
    response["WWW-Authenticate"] = "Token"
    return response


def _body(request) -> tuple[object, HttpResponse | None]:
    if not request.body:
        return {}, None  # as DRF: an empty body is an empty object, refused below for its missing fields
    if request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != "application/json":
        return None, refusal("unsupported_media_type")
    try:
        return json.loads(request.body, parse_constant=_no_constant), None
    except (ValueError, RecursionError):
        # Malformed, not UTF-8, NaN/Infinity, or nested deeper than Python's recursion limit.
        return None, refusal("malformed_json")


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


@csrf_exempt  # checked in _caller, for session callers only
def war(request) -> HttpResponse:
    """POST /api/war (see ``WarView`` for what it answers)."""
    try:
        if request.method != "POST":
            response = refusal("method_not_allowed")
            response["Allow"] = "POST"
            return response
        caller = _caller(request)
        if isinstance(caller, HttpResponse):
            return caller
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > WAR_MAX_BODY:
            return refusal("too_large")
        data, refused = _body(request)
        if refused is not None:
            return refused
        fields, errors = war_fields(data)
        if errors:
            return refusal("invalid", errors=errors)
        return war_answer(request, caller, fields)
    except Exception as exc:
        # Counted, then answered where every outage is (ServiceUnavailableMiddleware: 503 + Retry-After).
        warroom.count_error("unavailable" if is_outage(exc) else "server_error")
        raise


RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    description="Seconds to wait before trying again (`too_early`, `rate_limited`, `unavailable`, `not_ready`).",
    response=[403, 429, 503],
)


class WarView(APIView):
    """Take a queue number for a time slot the moment its war opens.

    The server's clock decides when the war opens, never the device's. One holding ticket per person per
    slot (and per war day); retrying after a lost answer is safe: the ticket already held comes back with
    200 `already_reserved`. Attempts are rate-limited per account and per address (429 with Retry-After).
    Sign in with `Authorization: Token <key>`, or with a session cookie and the CSRF token.
    """

    # The OpenAPI description of ``war`` above, and nothing else: it is listed only in the schema's URLs
    # (wartiket/schema_urls.py), never served.
    authentication_classes = [CachedTokenAuthentication, CachedSessionAuthentication]

    @extend_schema(
        request=WarRequestSerializer,
        parameters=[RETRY_AFTER],
        responses={
            201: OpenApiResponse(WarResultSerializer, description="`code`: `reserved`: a new ticket"),
            200: OpenApiResponse(
                WarResultSerializer, description="`code`: `already_reserved`: the ticket you already hold"
            ),
            202: OpenApiResponse(
                WarEntrySerializer,
                description="`code`: `entered`: draw mode, your entry is recorded (asking again is safe)",
            ),
            **error_responses(
                "invalid",
                "malformed_json",
                "not_authenticated",
                "too_early",
                "closed",
                "nik_required",
                "user_mismatch",
                "bypass_invalid",
                "challenge_required",
                "challenge_invalid",
                "csrf_failed",
                "unknown_slot",
                "sold_out",
                "one_per_day",
                "not_drawn",
                "too_large",
                "unsupported_media_type",
                "rate_limited",
                "unavailable",
                "not_ready",
            ),
        },
    )
    def post(self, request):
        raise NotImplementedError("documentation only: POST /api/war is served by queueing.api.war")


class TimeView(APIView):
    """The server clock that decides when wars open; count down with it, not with the device's clock."""

    permission_classes = [permissions.AllowAny]
    authentication_classes = []

    @extend_schema(
        responses={
            200: inline_serializer(
                "ServerTime", {"server_time": serializers.DateTimeField(), "epoch_ms": serializers.IntegerField()}
            ),
            **error_responses("unavailable"),
        }
    )
    def get(self, request):
        now_ms = clock.redis_now_ms()
        return Response({"server_time": ms_to_datetime(now_ms).isoformat(), "epoch_ms": now_ms})


class SlotListView(APIView):
    """Upcoming slots with their live remaining seats and war times.

    No login needed; a token that is sent must be valid (401 otherwise).
    """

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        responses={200: SlotSerializer(many=True), **error_responses("not_authenticated", "unavailable")},
    )
    def get(self, request):
        slots = list(Slot.objects.visible().upcoming())
        context = {"remaining": quota.remaining_for(slots)}
        return Response(SlotSerializer(slots, many=True, context=context).data)


class SlotDetailView(APIView):
    """One slot with its live remaining seats and war times. No login needed."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: SlotSerializer, **error_responses("not_authenticated", "not_found", "unavailable")})
    def get(self, request, slot_id: int):
        slot = Slot.objects.visible().filter(pk=slot_id).first()
        if slot is None:
            return error_response("not_found")
        context = {"remaining": quota.remaining_for([slot])}
        return Response(SlotSerializer(slot, context=context).data)


class DrawView(APIView):
    """A draw slot's public record: commitment before the window, seed and order after the draw.

    No login needed. Anyone can recompute the order from it (docs/fairness.md); 404 for a slot that is
    not a draw slot.
    """

    permission_classes = [permissions.AllowAny]
    authentication_classes = []

    @extend_schema(responses={200: DrawSerializer, **error_responses("not_found", "unavailable")})
    def get(self, request, slot_id: int):
        slot = Slot.objects.visible().filter(pk=slot_id).first()
        if slot is None or not slot.is_draw:
            return error_response("not_found")
        return Response(draws.published(slot))


class MyTicketsView(APIView):
    """Your tickets, newest slot first."""

    @extend_schema(responses={200: TicketSerializer(many=True), **error_responses("not_authenticated", "unavailable")})
    def get(self, request):
        return Response(TicketSerializer(pages.my_tickets(request.user), many=True).data)


class CancelTicketView(APIView):
    """Cancel one of your tickets; its seat goes back to the slot."""

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "code",
                str,
                OpenApiParameter.PATH,
                pattern=f"^{TICKET_CODE_PATTERN}$",
                description="The ticket's code, XXXX-XXXX-XXXX",
            ),
        ],
        responses={
            200: CancelResultSerializer,
            **error_responses(
                "not_authenticated", "csrf_failed", "not_found", "not_cancellable", "unavailable", "not_ready"
            ),
        },
    )
    def post(self, request, code: str):
        result = reservations.cancel(request.user.id, code)
        return Response({"code": "cancelled", "ticket": result.code, "remaining": result.remaining})
