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

War attempts (and draw entries) on a slot whose ``challenge`` is ``on`` or ``hot`` need a proof too
(``check_war``). Their challenges come from ``new(ref)`` (``GET /api/challenge?slot=<id>``) and carry the
slot and the level in the signed parameters (``data``), so a solution is good for that slot only, and an
easier challenge (a sign-up's, or one fetched while the slot was only ``on``) is refused on a ``hot``
slot. ``check_war`` verifies in-process; the replay check happens inside reserve.lua, in the attempt's
one round trip (``WarProof``: its key and lifetime).
"""

from __future__ import annotations

import datetime
import secrets
import time
from typing import NamedTuple

import altcha
from django.conf import settings
from django.utils.crypto import salted_hmac

from accounts.services import throttle
from queueing.services import catalog, heal, store
from queueing.services.catalog import SlotRef
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


# A war challenge's level (``queueing.models.Challenge``) by the work it asks; a slot's level needs at least its own.
LEVELS = {"off": 0, "on": 1, "hot": 2}


class WarProof(NamedTuple):
    """A verified war proof, still to be spent once: reserve.lua's KEYS[9] and ARGV[11]."""

    key: str
    ttl_ms: int


def new(ref: SlotRef | None = None) -> dict:
    """A fresh signed challenge, as JSON for the widget (``{"parameters": …, "signature": …}``).

    Without ``ref``: for sign-up and login. With a war slot's ``ref``: for war attempts on that slot, at its
    level (``hot`` searches ``WAR_POW_HOT_MAX_NUMBER`` counters; ``on``, and ``off`` in case staff turn it
    on, ``WAR_POW_MAX_NUMBER``), the slot and level signed in ``data``.
    """
    data = None
    top = settings.WAR_POW_MAX_NUMBER
    if ref is not None:
        level = "hot" if ref.challenge == "hot" else "on"
        data = {"level": level, "slot": ref.id}
        if level == "hot":
            top = settings.WAR_POW_HOT_MAX_NUMBER
    top = max(2, top)
    counter = top // 2 + secrets.randbelow(top - top // 2)
    challenge = altcha.create_challenge(
        algorithm=ALGORITHM,
        cost=settings.WAR_POW_COST,
        counter=counter,
        expires_at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=settings.WAR_POW_EXPIRES_SECONDS),
        data=data,
        hmac_secret=_secret("challenge"),
        hmac_key_secret=_secret("key"),
    )
    return challenge.to_dict()


def new_for_slot(slot_id: int) -> dict:
    """``new`` for the war slot ``slot_id``, found in the war catalog (no PostgreSQL); else ``unknown_slot``."""
    try:
        ref = catalog.by_id(slot_id)
    except ReservationError as exc:
        if exc.code == "not_ready":
            heal.kick()  # the catalog is gone with Redis' state, as on the war path: rebuild it
        raise
    if ref is None:
        raise ReservationError("unknown_slot")
    return new(ref)


def _verified(payload: str | None) -> altcha.Payload:
    """The payload, parsed, if it solves a challenge we signed that has not expired; else raise."""
    if not payload:
        raise ReservationError("challenge_required")
    if len(payload) > 4096:
        raise ReservationError("challenge_invalid")
    try:
        parsed = altcha.Payload.from_base64(payload)
        result = altcha.verify_solution(parsed, _secret("challenge"), hmac_key_secret=_secret("key"))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        raise ReservationError("challenge_invalid") from None
    if not result.verified:
        raise ReservationError("challenge_invalid")
    return parsed


def _replay_ttl_ms(parsed: altcha.Payload) -> int:
    # Signed by us, so expires_at is ours; keep the mark until then (plus a margin for clock steps).
    return max(1000, int((parsed.challenge.parameters.expires_at - time.time()) * 1000) + 60_000)


def verify(payload: str | None) -> None:
    """Accept a solution once, or raise ``ReservationError`` ``challenge_required`` / ``challenge_invalid``.

    ``payload`` is what the client sent (header ``X-Altcha`` or form field ``altcha``): base64 JSON of the
    challenge and its solution. Missing: ``challenge_required``. Malformed, tampered, wrong, expired or seen
    before: ``challenge_invalid``. With ``WAR_POW_ENABLED`` off, everything passes.

    For sign-up and login; war attempts use ``check_war`` (a war challenge is refused here: its work buys
    one war attempt, not also an account).
    """
    if not enabled():
        return
    parsed = _verified(payload)
    if parsed.challenge.parameters.data is not None:
        raise ReservationError("challenge_invalid")
    if not get_redis().set(f"altcha:used:{parsed.challenge.signature}", 1, nx=True, px=_replay_ttl_ms(parsed)):
        raise ReservationError("challenge_invalid")


def check_war(ref: SlotRef, payload: str | None) -> WarProof | None:
    """The proof a war attempt (or draw entry) on ``ref`` needs, verified; None when the slot needs none.

    Raises ``challenge_required`` (none sent) or ``challenge_invalid`` (malformed, tampered, wrong, expired,
    for another slot, or easier than the slot's level). Touches no Redis: the caller passes the returned
    key and lifetime to its Lua script, which refuses a replay with ``SET NX`` (``challenge_invalid``) in
    the attempt's one round trip.
    """
    # An unknown level (a catalog newer than this code) asks for the most work, never for none.
    needed = LEVELS.get(ref.challenge, LEVELS["hot"])
    if not enabled() or needed == 0:
        return None
    parsed = _verified(payload)
    data = parsed.challenge.parameters.data
    if not isinstance(data, dict) or data.get("slot") != ref.id or LEVELS.get(data.get("level"), 0) < needed:
        raise ReservationError("challenge_invalid")
    return WarProof(store.pow_key(ref.day, parsed.challenge.signature), _replay_ttl_ms(parsed))


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
