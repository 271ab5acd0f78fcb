"""DRF authentication for the API.

``ApiTokenAuthentication`` (``Authorization: Token <key>``) returns the real ``User`` for ordinary
endpoints. The war endpoint uses the ``Cached*`` classes instead: they return a ``Principal`` built from
Redis, so a rejected attempt never queries PostgreSQL.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import HTTP_HEADER_ENCODING, authentication, exceptions

from accounts.models import ApiToken, hash_secret
from accounts.services import identity

INVALID_TOKEN = _("Token tidak valid atau sudah dicabut.")


def token_from_header(request) -> str | None:
    return token_from_meta(request.META)


def token_from_meta(meta: dict) -> str | None:
    """The key of ``Authorization: Token <key>`` in a request's META (or WSGI environ); None without one."""
    parts = meta.get("HTTP_AUTHORIZATION", "").encode(HTTP_HEADER_ENCODING, "replace").split()
    if not parts or parts[0].lower() != b"token":
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed(_("Header Authorization harus berbentuk 'Token <kunci>'."))
    try:
        return parts[1].decode()
    except UnicodeError as exc:
        raise exceptions.AuthenticationFailed(_("Token berisi karakter yang tidak valid.")) from exc


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        raw = token_from_header(request)
        if raw is None:
            return None
        token = ApiToken.objects.select_related("user").filter(key_hash=hash_secret(raw)).first()
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


class CachedTokenAuthentication(ApiTokenAuthentication):
    def authenticate(self, request):
        raw = token_from_header(request)
        if raw is None:
            return None
        principal = identity.principal_for_token(raw)
        if principal is None:
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        return principal, raw


class CachedSessionAuthentication(authentication.SessionAuthentication):
    """Session login with CSRF enforced, like DRF's, but the user comes from the Redis identity cache."""

    def authenticate(self, request):
        principal = identity.principal_for_session(request._request.session)
        if principal is None:
            return None
        self.enforce_csrf(request)
        return principal, None
