"""Who is calling, answered from Redis so the war endpoint never has to ask PostgreSQL.

A war rejection must cost zero database queries, yet every request must still be tied to a real, active
account. The few facts the war needs (id, active, has NIK, person key, session hash) are cached in Redis per user and
per API token (``IDENTITY_TTL``), filled from PostgreSQL on a miss.

How long a stale entry can be used — the bound:

- ``save()`` of a user, and deleting a token, drop the entries at once (``accounts/signals.py``);
- any other change of a cached fact (``QuerySet.update()``, raw SQL, another service) fires a PostgreSQL
  trigger (migration ``accounts/0005``) that NOTIFYs ``identity`` at commit. Each web process runs one
  listener thread (started by its first identity lookup, reconnecting after a failure) that drops the
  user's entries when it hears it: within about a second after the commit. It drops them once more a
  second later, in case a lookup that read PostgreSQL just before the commit wrote the old facts back;
- a change committed while no listener was connected (every web process down, PostgreSQL or Redis
  unreachable) is caught up when a listener (re)connects: it drops every user whose trigger stamp
  ``identity_changed_at`` is younger than ``IDENTITY_TTL`` (older entries have expired anyway).

So a banned account is refused within about a second, and only a listener that cannot reach PostgreSQL
or Redis for the whole hour leaves an entry to its TTL. The hot path pays nothing for it: a cached
lookup is one Redis GET.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass

import psycopg
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.db import connections
from django.utils.crypto import constant_time_compare

from accounts.models import ApiToken, User, hash_secret, person_key
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)

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
    listener.ensure_started()
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
    listener.ensure_started()
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


def _forget_user_ids(cursor, user_ids) -> None:
    """Drop the entries of these users and of their tokens (the listener's own connection reads them)."""
    user_ids = sorted(set(user_ids))
    if not user_ids:
        return
    cursor.execute("SELECT key_hash FROM accounts_apitoken WHERE user_id = ANY(%s)", [user_ids])
    keys = [_user_key(uid) for uid in user_ids] + [_token_key(key_hash) for (key_hash,) in cursor.fetchall()]
    get_redis().delete(*keys)


class Listener:
    """One thread per process: LISTEN identity, drop what the trigger names (see the module docstring)."""

    CHANNEL = "identity"
    # The second drop, for a lookup that read PostgreSQL just before the change and wrote after the first.
    AGAIN_AFTER = 1.0
    RETRY_AFTER = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Set each time the thread is listening and caught up (tests wait for it).
        self.ready = threading.Event()

    def ensure_started(self) -> None:
        # The fast path is one comparison; the pid check restarts the thread in a forked child.
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self.ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="identity-listener", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop this process's thread (tests: its connection would keep the test database from being dropped)."""
        with self._lock:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout)
            self._thread = None
            self._pid = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._listen(stop)
            except Exception:  # whatever broke: reconnect, and catch up on what was missed
                log.warning("identity listener: lost its connection, reconnecting", exc_info=True)
            self.ready.clear()
            stop.wait(self.RETRY_AFTER)

    def _listen(self, stop: threading.Event) -> None:
        params = connections["default"].get_connection_params()
        with psycopg.connect(**params, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(f"LISTEN {self.CHANNEL}")
            # Changes made while nobody listened; entries older than the TTL are gone by themselves.
            cursor.execute(
                "SELECT id FROM accounts_user WHERE identity_changed_at > now() - make_interval(secs => %s)",
                [IDENTITY_TTL],
            )
            _forget_user_ids(cursor, [uid for (uid,) in cursor.fetchall()])
            self.ready.set()
            again: dict[int, float] = {}
            while not stop.is_set():
                heard = {int(n.payload) for n in conn.notifies(timeout=0.25)}
                _forget_user_ids(cursor, heard)
                now = time.monotonic()
                due = [uid for uid, at in again.items() if at <= now]
                _forget_user_ids(cursor, due)
                for uid in due:
                    del again[uid]
                again.update(dict.fromkeys(heard, now + self.AGAIN_AFTER))


listener = Listener()
