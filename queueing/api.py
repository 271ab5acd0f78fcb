"""The JSON API. Views parse, call one service, and answer; the rules live in ``services/``."""

from __future__ import annotations

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import CachedSessionAuthentication, CachedTokenAuthentication
from queueing import war_endpoint
from queueing.models import CODE_ALPHABET, Slot
from queueing.serializers import (
    CancelResultSerializer,
    DrawSerializer,
    SlotSerializer,
    TicketSerializer,
    WarEntrySerializer,
    WarRequestSerializer,
    WarResultSerializer,
)
from queueing.services import clock, draws, pages, quota, reservations
from queueing.services.store import ms_to_datetime
from wartiket.api_errors import error_response, error_responses

# A ticket code as ``new_ticket_code`` prints it, XXXX-XXXX-XXXX in Crockford base32 (URLs and schema).
TICKET_CODE_PATTERN = "-".join([f"[{CODE_ALPHABET}]{{4}}"] * 3)


@csrf_exempt  # checked by the endpoint, for session callers only
def war(request) -> HttpResponse:
    """POST /api/war through Django (the test client, ``make run``'s ASGI server): ``war_endpoint.attempt``.

    Production's WSGI application answers the same function before Django (``wartiket/wsgi.py``). An
    outage raises on to ServiceUnavailableMiddleware, which answers it as on every page: 503, Retry-After.
    """
    if request.method != "POST":
        answer = war_endpoint.refusal("method_not_allowed")
        answer.headers.append(("Allow", "POST"))
        return answer.response()
    return war_endpoint.attempt(request.META, lambda: request.body, lambda: request).response()


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
