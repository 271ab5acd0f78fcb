from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken
from accounts.services import challenge, throttle
from wartiket.api_errors import error_response, error_responses

WRONG_CREDENTIALS = _("Email atau kata sandi salah.")
BAD_SLOT = _("slot harus berupa id slot (angka).")


class TokenRequestSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    name = serializers.CharField(max_length=100, required=False, default="api")


class ObtainTokenView(APIView):
    """Trade your email and password for an API token.

    The token is shown once: keep it. Send it as `Authorization: Token <token>`. Asking again with the same
    `name` (default `api`) replaces that token: the old one stops working.

    Too many wrong passwords for the account or from the address: 429 `locked_out` with Retry-After. After
    a few recent failures, a proof of work is required first: solve `GET /api/challenge` and send it in the
    `X-Altcha` header (403 `challenge_required` / `challenge_invalid` otherwise).
    """

    authentication_classes = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            201: inline_serializer("Token", {"token": serializers.CharField()}),
            **error_responses(
                "invalid",
                "malformed_json",
                "not_authenticated",
                "locked_out",
                "challenge_required",
                "challenge_invalid",
                "too_large",
                "unsupported_media_type",
                "unavailable",
            ),
        },
    )
    def post(self, request):
        form = TokenRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        email = form.validated_data["email"].lower()
        # The Django request, not DRF's wrapper: django-axes counts and locks on it (accounts/services/throttle.py).
        django_request = request._request
        wait = throttle.login_retry_after(django_request, email)
        if wait:
            return error_response("locked_out", retry_after=wait)
        if challenge.login_needs_proof(django_request, email):
            challenge.verify(request.META.get(challenge.HEADER))  # challenge_required / challenge_invalid
        user = authenticate(django_request, email=email, password=form.validated_data["password"])
        if user is None:
            if getattr(django_request, "axes_locked_out", False):  # locked by a concurrent attempt meanwhile
                wait = throttle.login_retry_after(django_request, email) or settings.WAR_LOGIN_LOCKOUT_SECONDS
                return error_response("locked_out", retry_after=wait)
            return error_response("not_authenticated", detail=str(WRONG_CREDENTIALS))
        return Response({"token": ApiToken.replace(user, form.validated_data["name"])}, status=201)


class ChallengeView(APIView):
    """A proof-of-work challenge (ALTCHA v2, PBKDF2/SHA-256), signed and expiring.

    Find the counter whose derived key matches (the `altcha` Python package: `altcha.solve_challenge`), then
    send `base64(JSON {"challenge": …, "solution": …})` in the `X-Altcha` header (API) or the `altcha` form
    field (pages, done by the widget). Each solution is accepted once.

    Without parameters: for sign-up and login. With `?slot=<id>` (the `id` of `GET /api/slots`): for one war
    attempt on that slot (`POST /api/war`), at the slot's difficulty; good for that slot only.
    """

    authentication_classes = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "slot", int, description="A war slot's id: a challenge for one war attempt on it (its difficulty)"
            )
        ],
        responses={
            200: inline_serializer(
                "Challenge", {"parameters": serializers.JSONField(), "signature": serializers.CharField()}
            ),
            **error_responses("invalid", "unknown_slot", "unavailable", "not_ready"),
        },
    )
    def get(self, request):
        slot = request.query_params.get("slot")
        if slot is None:
            body = challenge.new()
        elif slot.isascii() and slot.isdigit() and len(slot) <= 12:
            body = challenge.new_for_slot(int(slot))  # unknown_slot / not_ready
        else:
            return error_response("invalid", detail=str(BAD_SLOT))
        response = Response(body)
        response["Cache-Control"] = "no-store"  # one challenge per client, never from a shared cache
        return response
