from __future__ import annotations

from django.contrib.auth import authenticate
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken
from wartiket.api_errors import error_response, error_responses

WRONG_CREDENTIALS = _("Email atau kata sandi salah.")


class TokenRequestSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(max_length=256, trim_whitespace=False)
    name = serializers.CharField(max_length=100, required=False, default="api")


class ObtainTokenView(APIView):
    """Trade your email and password for an API token.

    The token is shown once: keep it. Send it as `Authorization: Token <token>`.
    """

    authentication_classes = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            201: inline_serializer("Token", {"token": serializers.CharField()}),
            **error_responses(
                "invalid", "malformed_json", "not_authenticated", "too_large", "unsupported_media_type", "unavailable"
            ),
        },
    )
    def post(self, request):
        form = TokenRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = authenticate(
            request, email=form.validated_data["email"].lower(), password=form.validated_data["password"]
        )
        if user is None:
            return error_response("not_authenticated", detail=str(WRONG_CREDENTIALS))
        return Response({"token": ApiToken.issue(user, form.validated_data["name"])}, status=201)
