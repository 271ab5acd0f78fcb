"""Proof of work (ALTCHA, self-hosted): a few seconds of a browser's CPU per sign-up, far more for a bot farm.

``new()`` makes a challenge (``GET /api/challenge``); the client searches for the counter that yields the
challenge's key (PBKDF2), and sends challenge and solution back, base64 JSON, in the form field ``altcha``
(the vendored ``<altcha-widget>`` does this on the page) or the header ``X-Altcha`` (API clients).
``verify()`` accepts each solution once.

The challenge is HMAC-signed and expires, so the server keeps no state until a solution arrives. It uses
ALTCHA's deterministic mode: the server picks the counter (uniformly in the upper half of
``WAR_POW_MAX_NUMBER``) and signs the derived key, so the client must try on average ~3/4 of
``WAR_POW_MAX_NUMBER`` counters of ``WAR_POW_COST`` PBKDF2 iterations each, while verifying is two HMACs.
A verified solution is remembered in Redis until its challenge expires (``SET NX``): a replay is refused.
"""

from __future__ import annotations

import datetime
import secrets
import time

import altcha
from django.conf import settings
from django.utils.crypto import salted_hmac

from accounts.services import throttle
from queueing.services.errors import ReservationError
from wartiket.redis_client import get_redis

ALGORITHM = "PBKDF2/SHA-256"
HEADER = "HTTP_X_ALTCHA"  # request.META name of the X-Altcha header
FIELD = "altcha"  # the widget's hidden form field


def enabled() -> bool:
    return settings.WAR_POW_ENABLED


def _secret(purpose: str) -> str:
    # One configured key, or one derived from SECRET_KEY; separate keys for the challenge and the derived key.
    base = settings.WAR_POW_HMAC_KEY or settings.SECRET_KEY
    return salted_hmac(f"wartiket.altcha.{purpose}", "altcha", secret=base, algorithm="sha256").hexdigest()


def new() -> dict:
    """A fresh signed challenge, as JSON for the widget (``{"parameters": …, "signature": …}``)."""
    top = max(2, settings.WAR_POW_MAX_NUMBER)
    counter = top // 2 + secrets.randbelow(top - top // 2)
    challenge = altcha.create_challenge(
        algorithm=ALGORITHM,
        cost=settings.WAR_POW_COST,
        counter=counter,
        expires_at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=settings.WAR_POW_EXPIRES_SECONDS),
        hmac_secret=_secret("challenge"),
        hmac_key_secret=_secret("key"),
    )
    return challenge.to_dict()


def verify(payload: str | None) -> None:
    """Accept a solution once, or raise ``ReservationError`` ``challenge_required`` / ``challenge_invalid``.

    ``payload`` is what the client sent (header ``X-Altcha`` or form field ``altcha``): base64 JSON of the
    challenge and its solution. Missing: ``challenge_required``. Malformed, tampered, wrong, expired or seen
    before: ``challenge_invalid``. With ``WAR_POW_ENABLED`` off, everything passes.

    For any endpoint that wants a proof (the war path may call it with ``request.META.get(HEADER)``).
    """
    if not enabled():
        return
    if not payload:
        raise ReservationError("challenge_required")
    if len(payload) > 4096:
        raise ReservationError("challenge_invalid")
    try:
        result = altcha.verify_solution(payload, _secret("challenge"), hmac_key_secret=_secret("key"))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ReservationError("challenge_invalid") from None
    if not result.verified:
        raise ReservationError("challenge_invalid")
    parsed = altcha.Payload.from_base64(payload)
    # Signed by us, so expires_at is ours; keep the mark until then (plus a margin for clock steps).
    ttl_ms = max(1000, int((parsed.challenge.parameters.expires_at - time.time()) * 1000) + 60_000)
    if not get_redis().set(f"altcha:used:{parsed.challenge.signature}", 1, nx=True, px=ttl_ms):
        raise ReservationError("challenge_invalid")


def verify_request(request) -> None:
    """``verify`` with the solution the request carries: the X-Altcha header, else the form field."""
    verify(request.META.get(HEADER) or request.POST.get(FIELD))


def login_needs_proof(request, email: str | None) -> bool:
    """Login and token issuance ask for a proof only after recent failures for the account or the address.

    So a first login, and the README's plain curl for a token, never meet a challenge; a password guesser
    pays for every guess after the first few.
    """
    if not enabled():
        return False
    account, address = throttle.login_failures(request, email or "")
    return account >= settings.WAR_LOGIN_POW_AFTER_FAILURES or address >= settings.WAR_LOGIN_POW_AFTER_IP_FAILURES
