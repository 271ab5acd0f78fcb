"""Who is calling, answered from Redis so the war endpoint never has to ask PostgreSQL.

A war rejection must cost zero database queries, yet every request must still be tied to a real, active
account. The few facts the war needs (id, active, has NIK, session hash) are cached in Redis per user and
per API token, filled from PostgreSQL on a miss and dropped whenever the user or the token changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.utils.crypto import constant_time_compare

from accounts.models import ApiToken, User, hash_secret, person_key
from wartiket.redis_client import get_redis

IDENTITY_TTL = 3600
# Unknown tokens are remembered briefly so a bot spraying garbage tokens cannot hammer PostgreSQL.
NEGATIVE_TTL = 30


@dataclass(frozen=True)
class Principal:
    """The caller as the war endpoint sees it: enough to decide, nothing that needs the database."""

    id: int
    has_nik: bool
    # The person behind the account ("nik:<NIK>"), which the one-ticket-per-day rule is keyed by.
    person: str = ""
    is_staff: bool = False
    is_active: bool = True
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> int:
        return self.id

    @property
    def person_key(self) -> str:
        return self.person or person_key(self.id, None)


# The version in the key: entries written by an older release (without the person key) are never read.
def _user_key(user_id: int | str) -> str:
    return f"ident:v2:u:{user_id}"


def _token_key(key_hash: str) -> str:
    return f"ident:v2:t:{key_hash}"


def _facts(user: User) -> dict:
    return {
        "id": user.pk,
        "active": user.is_active,
        "nik": bool(user.nik),
        "person": user.person_key,
        "staff": user.is_staff,
        "sh": user.get_session_auth_hash(),
    }


def _principal(facts: dict) -> Principal | None:
    if not facts.get("active"):
        return None
    return Principal(
        id=int(facts["id"]), has_nik=bool(facts["nik"]), person=facts["person"], is_staff=bool(facts["staff"])
    )


def principal_for_user(user: User) -> Principal | None:
    """The principal of an account already loaded (commands, tests, staff tools)."""
    return _principal(_facts(user))


def principal_for_token(raw_key: str) -> Principal | None:
    key_hash = hash_secret(raw_key)
    r = get_redis()
    cached = r.get(_token_key(key_hash))
    if cached == "-":
        return None
    if cached:
        return _principal(json.loads(cached))
    token = ApiToken.objects.select_related("user").filter(key_hash=key_hash).first()
    if token is None:
        r.set(_token_key(key_hash), "-", ex=NEGATIVE_TTL)
        return None
    facts = _facts(token.user)
    r.set(_token_key(key_hash), json.dumps(facts), ex=IDENTITY_TTL)
    return _principal(facts)


def principal_for_session(session) -> Principal | None:
    user_id = session.get(SESSION_KEY)
    if user_id is None:
        return None
    r = get_redis()
    cached = r.get(_user_key(user_id))
    if cached:
        facts = json.loads(cached)
    else:
        user = User.objects.filter(pk=user_id).first()
        if user is None:
            return None
        facts = _facts(user)
        r.set(_user_key(user_id), json.dumps(facts), ex=IDENTITY_TTL)
    # Same rule as django.contrib.auth.get_user: a password change logs out every other session.
    if not constant_time_compare(session.get(HASH_SESSION_KEY, ""), facts["sh"]):
        return None
    return _principal(facts)


def forget_user(user: User) -> None:
    """Drop cached facts after the user or their tokens change (called from signals)."""
    keys = [_user_key(user.pk)]
    keys += [_token_key(h) for h in ApiToken.objects.filter(user=user).values_list("key_hash", flat=True)]
    get_redis().delete(*keys)


def forget_token(key_hash: str) -> None:
    get_redis().delete(_token_key(key_hash))
