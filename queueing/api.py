"""The JSON API. Views parse, call one service, and answer; the rules live in ``services/``."""

from __future__ import annotations

import datetime
import json
import re

from django.conf import settings
from django.utils import translation
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import CachedSessionAuthentication, CachedTokenAuthentication
from accounts.services import identity
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
from wartiket.api_errors import error_response, error_responses
from wartiket.http import client_ip

# The war body is ~80 bytes; anything much larger is refused before it is read.
WAR_MAX_BODY = 4096

# A ticket code as ``new_ticket_code`` prints it, XXXX-XXXX-XXXX in Crockford base32 (URLs and schema).
TICKET_CODE_PATTERN = "-".join([f"[{CODE_ALPHABET}]{{4}}"] * 3)


# Plainly valid war bodies skip the serializer (profiled: the largest single cost of a refused attempt after
# the two Redis round trips). These accept only what WarRequestSerializer accepts, with the same values;
# anything else goes through the serializer, which then gives the usual error.
_PLAIN_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}\Z")
_PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def plain_war_fields(data) -> dict | None:
    """The war body's fields when they are plainly valid, else None."""
    if not isinstance(data, dict):
        return None
    location, label = data.get("location_id"), data.get("time_slot")
    if not (isinstance(location, str) and _PLAIN_SLUG.match(location)):
        return None
    if not (isinstance(label, str) and len(label) == 5 and TIME_LABEL_RE.match(label)):
        return None
    fields = {"location_id": location, "time_slot": label}
    if "date" in data:
        raw = data["date"]
        if not (isinstance(raw, str) and _PLAIN_DATE.match(raw)):
            return None
        try:
            fields["date"] = datetime.date.fromisoformat(raw)
        except ValueError:
            return None
    if "user_id" in data:
        user_id = data["user_id"]
        if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
            return None
        fields["user_id"] = str(user_id)
    return fields


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """The war endpoint answers JSON whatever the Accept header says; parsing Accept cost every attempt."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# Translated refusal messages by (code, language): resolving the lazy text cost each refusal a catalog lookup.
_details: dict[tuple[str, str], str] = {}


def _detail(code: str) -> str:
    key = (code, translation.get_language())
    text = _details.get(key)
    if text is None:
        text = _details[key] = str(ERRORS[code][1])
    return text


def war_answer(request, principal, data: dict) -> Response:
    """One war attempt with validated fields, as an (unrendered) Response: both ways into WarView end here."""
    if "user_id" in data and data["user_id"] != str(principal.id):
        warroom.count_error("user_mismatch")
        return error_response("user_mismatch")
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
        # Answered here rather than through an exception handler: most attempts in a war end here.
        if not exc.counted:
            warroom.count_error(exc.code)
        return error_response(exc.code, detail=_detail(exc.code), retry_after=exc.retry_after, **exc.data)
    return Response(result.body(), status=SUCCESS_STATUS[result.outcome])


def _quiet(response):
    if 400 <= response.status_code < 500:
        # Refusals are the war's normal answers, thousands a second, counted by the war room: a
        # django.request warning line for each would cost more than the refusal itself.
        response._has_been_logged = True
    return response


_JSON = JSONRenderer()


def token_attempt(request):
    """A plain token-authenticated JSON attempt, answered without DRF's request cycle; else None.

    Profiled on a refused attempt, DRF's dispatch around the view (request wrapping, negotiation,
    permission and exception machinery, its JSON parsing) cost about a fifth of the request. Bots and
    API clients send exactly this shape, thousands a second. Anything else (session login, another
    content type, an unknown token, a body that needs the serializer's explanation) returns None and
    goes through the full DRF view, which answers it as it always did.
    """
    meta = request.META
    parts = meta.get("HTTP_AUTHORIZATION", "").split()
    if request.method != "POST" or len(parts) != 2 or parts[0].lower() != "token":
        return None
    if meta.get("CONTENT_TYPE", "").split(";")[0].strip().lower() != "application/json":
        return None
    length = meta.get("CONTENT_LENGTH")
    if not length or not length.isdigit() or int(length) > WAR_MAX_BODY:
        return None
    principal = identity.principal_for_token(parts[1])
    if principal is None:
        return None
    try:
        data = plain_war_fields(json.loads(request.body))
    except (ValueError, RecursionError):
        # Malformed, or nested deeper than Python's recursion limit: the DRF view's parser explains it.
        return None
    if data is None:
        return None
    response = war_answer(request, principal, data)
    response.accepted_renderer, response.accepted_media_type, response.renderer_context = _JSON, "application/json", {}
    return _quiet(response)


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
    """

    # Rejections cost zero PostgreSQL queries. Plain token attempts are answered by ``token_attempt``
    # before this class runs (see there); this class answers the rest (sessions, other bodies, errors).

    authentication_classes = [CachedTokenAuthentication, CachedSessionAuthentication]
    permission_classes = [permissions.IsAuthenticated]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation

    @classmethod
    def as_view(cls, **initkwargs):
        full = super().as_view(**initkwargs)

        def war(request, *args, **kwargs):
            return token_attempt(request) or full(request, *args, **kwargs)

        # What Django's CSRF check, DRF and drf-spectacular read off a view function.
        war.cls, war.initkwargs, war.csrf_exempt = full.cls, full.initkwargs, True
        war.__name__, war.__doc__ = full.__name__, full.__doc__
        return war

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
        if int(request.META.get("CONTENT_LENGTH") or 0) > WAR_MAX_BODY:
            warroom.count_error("too_large")
            return error_response("too_large")
        data = plain_war_fields(request.data)
        if data is None:
            form = WarRequestSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            data = form.validated_data
        return war_answer(request, request.user, data)

    def handle_exception(self, exc):
        # The war room's error counter, on the error path only: what reserve.lua decided it counted itself.
        try:
            response = super().handle_exception(exc)
        except Exception:
            warroom.count_error("server_error")
            raise
        if not (isinstance(exc, ReservationError) and exc.counted):
            warroom.count_error(response.data.get("code", "error") if isinstance(response.data, dict) else "error")
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        return _quiet(super().finalize_response(request, response, *args, **kwargs))


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
