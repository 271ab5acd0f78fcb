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
or Redis for the whole hour leaves an entry to its TTL.

In front of Redis each process keeps what it read (``local``, ``LOCAL_TTL``), so a caller who comes back
soon (a buyer retrying, a bot) costs no identity round trip at all: the war attempt is then one Redis call.
That copy is used only while this process's listener is connected and caught up (otherwise every lookup
goes to Redis as before), and the listener drops it exactly as it drops the Redis entries: for a changed
user (the trigger), and for a deleted token (``forget_token`` NOTIFYs ``identity_key`` at commit).
Every process has its own listener, so every process drops its copy within about a second.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import psycopg
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.db import connections
from django.utils.crypto import constant_time_compare

from accounts.models import ApiToken, User, hash_secret, person_key
from wartiket import pid
from wartiket.redis_client import command as redis_command
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)

IDENTITY_TTL = 3600
# Unknown tokens are remembered briefly so a bot spraying garbage tokens cannot hammer PostgreSQL.
NEGATIVE_TTL = 30
# The in-process copy: how long an entry lives if nothing drops it first, and how many a process keeps.
LOCAL_TTL = 30.0
LOCAL_MAX = 100_000
UNKNOWN = "-"


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


class LocalCopy:
    """This process's copy of identity entries: key -> facts (or ``UNKNOWN``), trusted while the listener is."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, dict | str]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | str | None:
        if not listener.ready.is_set():
            return None
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, value: dict | str, ttl: float = LOCAL_TTL) -> None:
        if not listener.ready.is_set():
            return
        with self._lock:
            if len(self._entries) >= LOCAL_MAX:
                self._entries.clear()  # a spray of garbage tokens must not grow a process without bound
            self._entries[key] = (time.monotonic() + ttl, value)

    def drop(self, keys) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)

    def drop_users(self, user_ids) -> None:
        user_ids = set(user_ids)
        if not user_ids:
            return
        with self._lock:
            stale = [k for k, (_, v) in self._entries.items() if isinstance(v, dict) and v["id"] in user_ids]
            for key in stale:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


local = LocalCopy()


def principal_for_token(raw_key: str) -> Principal | None:
    listener.ensure_started()
    key = _token_key(hash_secret(raw_key))
    facts = local.get(key)
    if facts is None:
        facts = _token_facts(key)
    return None if facts == UNKNOWN else _principal(facts)


def _token_facts(key: str) -> dict | str:
    # On this thread's own connection: in a war's opening, every buyer's first attempt comes here.
    cached = redis_command("GET", key)
    if cached:
        facts = cached if cached == UNKNOWN else json.loads(cached)
        local.put(key, facts, LOCAL_TTL if facts != UNKNOWN else min(LOCAL_TTL, NEGATIVE_TTL))
        return facts
    token = ApiToken.objects.select_related("user").filter(key_hash=key.rsplit(":", 1)[1]).first()
    if token is None:
        get_redis().set(key, UNKNOWN, ex=NEGATIVE_TTL)
        return UNKNOWN
    facts = _facts(token.user)
    get_redis().set(key, json.dumps(facts), ex=IDENTITY_TTL)
    return facts


def principal_for_session(session) -> Principal | None:
    user_id = session.get(SESSION_KEY)
    if user_id is None:
        return None
    listener.ensure_started()
    key = _user_key(user_id)
    facts = local.get(key)
    if facts is None:
        cached = redis_command("GET", key)
        if cached:
            facts = json.loads(cached)
            local.put(key, facts)
        else:
            user = User.objects.filter(pk=user_id).first()
            if user is None:
                return None
            facts = _facts(user)
            get_redis().set(key, json.dumps(facts), ex=IDENTITY_TTL)
    # Same rule as django.contrib.auth.get_user: a password change logs out every other session.
    if not constant_time_compare(session.get(HASH_SESSION_KEY, ""), facts["sh"]):
        return None
    return _principal(facts)


def forget_user(user: User) -> None:
    """Drop cached facts after the user or their tokens change (called from signals).

    Other processes' copies: the trigger of migration accounts/0005 tells their listeners at commit."""
    keys = [_user_key(user.pk)]
    keys += [_token_key(h) for h in ApiToken.objects.filter(user=user).values_list("key_hash", flat=True)]
    local.drop(keys)
    local.drop_users([user.pk])
    get_redis().delete(*keys)


def forget_token(key_hash: str) -> None:
    """A token was deleted: drop its entries here, and (at commit) in every process's copy."""
    key = _token_key(key_hash)
    local.drop([key])
    get_redis().delete(key)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [Listener.KEY_CHANNEL, key_hash])


def _forget_user_ids(cursor, user_ids) -> None:
    """Drop the entries of these users and of their tokens (the listener's own connection reads them)."""
    user_ids = sorted(set(user_ids))
    if not user_ids:
        return
    cursor.execute("SELECT key_hash FROM accounts_apitoken WHERE user_id = ANY(%s)", [user_ids])
    keys = [_user_key(uid) for uid in user_ids] + [_token_key(key_hash) for (key_hash,) in cursor.fetchall()]
    local.drop(keys)
    local.drop_users(user_ids)
    get_redis().delete(*keys)


def _forget_tokens(key_hashes) -> None:
    keys = [_token_key(key_hash) for key_hash in set(key_hashes)]
    if keys:
        local.drop(keys)
        get_redis().delete(*keys)


class Listener:
    """One thread per process: LISTEN identity, drop what the trigger names (see the module docstring)."""

    CHANNEL = "identity"
    # Deleted tokens (forget_token): no trigger on tokens, the delete's own transaction notifies.
    KEY_CHANNEL = "identity_key"
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
        if self._pid == pid.current():
            return
        with self._lock:
            if self._pid == pid.current():
                return
            self._stop = threading.Event()
            self.ready = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="identity-listener", daemon=True)
            self._thread.start()
            self._pid = pid.current()

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
            local.clear()  # what it copied may miss drops from now on: back to Redis for every lookup
            stop.wait(self.RETRY_AFTER)

    def _listen(self, stop: threading.Event) -> None:
        params = connections["default"].get_connection_params()
        with psycopg.connect(**params, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute(f"LISTEN {self.CHANNEL}")
            cursor.execute(f"LISTEN {self.KEY_CHANNEL}")
            # Changes made while nobody listened; entries older than the TTL are gone by themselves.
            cursor.execute(
                "SELECT id FROM accounts_user WHERE identity_changed_at > now() - make_interval(secs => %s)",
                [IDENTITY_TTL],
            )
            _forget_user_ids(cursor, [uid for (uid,) in cursor.fetchall()])
            local.clear()  # nothing copied before this connection is known to be current
            self.ready.set()
            again: dict[tuple[str, str], float] = {}
            while not stop.is_set():
                heard = {(n.channel, n.payload) for n in conn.notifies(timeout=0.25)}
                now = time.monotonic()
                due = [item for item, at in again.items() if at <= now]
                for item in due:
                    del again[item]
                drop = heard | set(due)
                _forget_user_ids(cursor, [int(p) for c, p in drop if c == self.CHANNEL])
                _forget_tokens([p for c, p in drop if c == self.KEY_CHANNEL])
                again.update(dict.fromkeys(heard, now + self.AGAIN_AFTER))


listener = Listener()
