"""Small HTTP helpers every app shares: who is on the other end, and where a ``next`` may lead.

The war's per-IP limit, the login lockout (django-axes), the registration limit and the address recorded on a
new account all key on the same client address, so a proxy setting changes them together.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def client_ip(request) -> str:
    return client_ip_from(request.META)


def client_ip_from(meta: dict) -> str:
    """``client_ip`` of a request's META (or WSGI environ)."""
    header = settings.WAR_CLIENT_IP_HEADER
    if header:
        # Trust only a header our own proxy sets; its first address is the client it saw.
        value = meta.get(header, "").split(",")[0].strip()
        if value:
            return value
    return meta.get("REMOTE_ADDR", "")


def safe_next(request: HttpRequest, default: str) -> str:
    """The ``next`` parameter (POST, else GET) if it stays on this site, else ``default``: never an open redirect."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default
