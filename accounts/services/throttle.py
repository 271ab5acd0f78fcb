"""What a bot pays for guessing passwords or making accounts: failures and sign-ups counted in Redis.

**Logins** (the login page, ``POST /api/auth/token``, the admin login) go through django-axes with its Redis
cache handler. Failures are counted under two keys, the account named (email, lower-cased) and the client
address (``wartiket.http.client_ip``, the war's own rule), each with its own limit: an account gets
``WAR_LOGIN_FAILURES_PER_ACCOUNT`` wrong passwords, an address ``WAR_LOGIN_FAILURES_PER_IP`` — far more,
because one carrier-grade NAT address carries hundreds of honest buyers. Past either, every attempt is
refused before any password is checked (the right one too) with 429 and Retry-After, until the counter
expires ``WAR_LOGIN_LOCKOUT_SECONDS`` after the latest counted failure. An unknown email is counted exactly
like a known one, so a lockout says nothing about which accounts exist.

**Sign-ups** are counted per client address per day (``WAR_REGISTRATIONS_PER_IP_PER_DAY``).
"""

from __future__ import annotations

import datetime
import math

from axes.handlers.cache import AxesCacheHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_cache_keys
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from wartiket.api_errors import is_api, json_error
from wartiket.redis_client import get_redis


def username(request, credentials: dict | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the account an attempt names, however it was sent.

    The login form sends ``username``, the token API ``email``; both count for the same lower-cased email,
    so ``Budi@Example.com`` and ``budi@example.com`` share one counter.
    """
    source = credentials if credentials else request.POST
    value = source.get("email") or source.get("username")
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()


def _limits() -> list[int]:
    # In the order of settings.AXES_LOCKOUT_PARAMETERS: ["username", "ip_address"].
    return [settings.WAR_LOGIN_FAILURES_PER_ACCOUNT, settings.WAR_LOGIN_FAILURES_PER_IP]


class AxesHandler(AxesCacheHandler):
    """axes' Redis cache handler, with one limit per lockout parameter instead of one for all.

    Stock axes compares the largest of the per-account and per-address counts with a single
    ``AXES_FAILURE_LIMIT``: either an address is locked after as few failures as an account (starving a
    CGNAT address) or an account survives as many guesses as an address. Counting, expiry and the backend
    that refuses locked requests are axes' own.
    """

    def counts(self, request, credentials: dict | None = None) -> list[tuple[str, int, int]]:
        """(cache key, failures, limit) for the account and the address of this attempt."""
        keys = get_client_cache_keys(request, credentials)
        found = self.cache.get_many(keys)
        return [(key, int(found.get(key) or 0), limit) for key, limit in zip(keys, _limits(), strict=True)]

    def get_failures(self, request, credentials: dict | None = None) -> int:
        return max(count for _key, count, _limit in self.counts(request, credentials))

    def is_locked(self, request, credentials: dict | None = None) -> bool:
        return any(count >= limit for _key, count, limit in self.counts(request, credentials))

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        # True only when the backend refused this attempt for an existing lockout (no password was checked).
        refused = bool(getattr(request, "axes_locked_out", False))
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is not None:
            # Stock axes also flags the failure that *reaches* its limit. Here that failure is answered like any
            # wrong password and the next attempt is the one refused: 10 wrong passwords, then 429.
            request.axes_locked_out = refused


def _handler() -> AxesHandler:
    return AxesProxyHandler.get_implementation()


def _credentials(email: str) -> dict:
    return {"email": email}


def login_failures(request, email: str) -> tuple[int, int]:
    """Recent failed logins (account, client address) for an attempt at ``email`` from this request."""
    AxesProxyHandler.update_request(request)
    (_k1, account, _l1), (_k2, address, _l2) = _handler().counts(request, _credentials(email))
    return (account if email else 0), address


def login_retry_after(request, email: str | None = None) -> int:
    """Seconds until this account and address may try again; 0 when not locked out."""
    AxesProxyHandler.update_request(request)
    credentials = _credentials(email) if email else None
    handler = _handler()
    waits = [
        max(handler.cache.ttl(key) or 0, 1)
        for key, count, limit in handler.counts(request, credentials)
        if count >= limit
    ]
    return max(waits, default=0)


def wait_words(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return ngettext("%(n)d menit", "%(n)d menit", minutes) % {"n": minutes}


def lockout_message(seconds: int) -> str:
    return _("Terlalu banyak percobaan masuk yang gagal. Demi keamanan akun, coba lagi dalam %(wait)s.") % {
        "wait": wait_words(seconds)
    }


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: a request refused for lockout answers 429 with Retry-After.

    JSON ``locked_out`` under /api/; elsewhere the page as the view rendered it (the login form says why and
    how long, see ``accounts.forms.LoginForm``), with the status and header set here.
    """
    wait = login_retry_after(request, username(request, credentials)) or settings.WAR_LOGIN_LOCKOUT_SECONDS
    if is_api(request):
        if original_response is not None and original_response.status_code == 429:
            return original_response  # the token view already answered locked_out
        response = json_error("locked_out", retry_after=wait)
    else:
        response = original_response if original_response is not None else HttpResponse(lockout_message(wait))
        response.status_code = 429
        response.reason_phrase = "Too Many Requests"
    response["Retry-After"] = str(wait)
    return response


# --- Sign-ups per client address per day -----------------------------------------------------------------


def _registration_key(ip: str) -> tuple[str, int]:
    """The counter of today's sign-ups from ``ip`` (Asia/Jakarta day) and the seconds left in that day."""
    now = timezone.localtime()
    midnight = timezone.make_aware(datetime.datetime.combine(now.date() + datetime.timedelta(days=1), datetime.time()))
    return f"abuse:reg:{now.date().isoformat()}:{ip or '-'}", max(1, math.ceil((midnight - now).total_seconds()))


def registration_wait(ip: str) -> int:
    """Seconds until ``ip`` may make another account (the day's end); 0 when it may now."""
    key, left = _registration_key(ip)
    count = int(get_redis().get(key) or 0)
    return left if count >= settings.WAR_REGISTRATIONS_PER_IP_PER_DAY else 0


def take_registration(ip: str) -> int:
    """Count one new account for ``ip`` today. Returns 0, or the seconds to wait when the day's limit is spent.

    Counted before the account is written (INCR decides, so concurrent sign-ups cannot all slip under the
    limit); ``give_back_registration`` undoes it when the account then is not made.
    """
    key, left = _registration_key(ip)
    pipe = get_redis().pipeline()
    pipe.incr(key)
    pipe.expire(key, left + 60)
    count = pipe.execute()[0]
    if count > settings.WAR_REGISTRATIONS_PER_IP_PER_DAY:
        get_redis().decr(key)
        return left
    return 0


def give_back_registration(ip: str) -> None:
    key, _left = _registration_key(ip)
    get_redis().decr(key)


def registration_message(seconds: int) -> str:
    hours = max(1, math.ceil(seconds / 3600))
    return ngettext(
        "Terlalu banyak akun baru dibuat dari jaringan Anda hari ini. Coba lagi dalam %(n)d jam.",
        "Terlalu banyak akun baru dibuat dari jaringan Anda hari ini. Coba lagi dalam %(n)d jam.",
        hours,
    ) % {"n": hours}
