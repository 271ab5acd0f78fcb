"""Who is on the other end of a request: one rule for every place that counts per address.

The war's per-IP limit, the login lockout (django-axes), the registration limit and the address recorded on a
new account all key on the same client address, so a proxy setting changes them together.
"""

from __future__ import annotations

from django.conf import settings


def client_ip(request) -> str:
    header = settings.WAR_CLIENT_IP_HEADER
    if header:
        # Trust only a header our own proxy sets; its first address is the client it saw.
        value = request.META.get(header, "").split(",")[0].strip()
        if value:
            return value
    return request.META.get("REMOTE_ADDR", "")
