"""QA / audit bypass tokens: pass the time gate, nothing else.

A bypass never skips quota, duplicate, one-per-day or rate checks: those stay inside reserve.lua, which
only learns "skip the clock". Tokens are stored hashed; every use is recorded.
"""

from __future__ import annotations

import datetime
import secrets

from django.db.models import Q
from django.utils import timezone

from accounts.models import hash_secret
from queueing.models import BypassToken, BypassUse
from queueing.services.errors import ReservationError
from queueing.services.store import ms_to_datetime


def issue(name: str, *, expires_at: datetime.datetime, slot=None, created_by=None) -> tuple[BypassToken, str]:
    """Create a token; the raw key is returned once and never stored."""
    raw = "wtb_" + secrets.token_urlsafe(30)
    token = BypassToken.objects.create(
        name=name,
        key_hash=hash_secret(raw),
        prefix=raw[:8],
        slot=slot,
        expires_at=expires_at,
        created_by=created_by,
    )
    return token, raw


def check(raw_key: str, slot_id: int) -> BypassToken:
    token = (
        BypassToken.objects.filter(key_hash=hash_secret(raw_key), revoked=False, expires_at__gt=timezone.now())
        .filter(Q(slot__isnull=True) | Q(slot_id=slot_id))
        .first()
    )
    if token is None:
        raise ReservationError("bypass_invalid")
    return token


def record_use(token: BypassToken, user_id: int, slot_id: int, outcome: str, now_ms: int) -> None:
    BypassUse.objects.create(
        token=token, user_id=user_id, slot_id=slot_id, outcome=outcome, used_at=ms_to_datetime(now_ms)
    )
