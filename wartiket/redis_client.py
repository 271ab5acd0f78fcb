"""The one Redis client the war engine uses (redis-py with hiredis), shared per process.

Separate from django-redis' cache client so the hot path has its own pool and plain ``str`` replies.
The war's Lua scripts run on a leaner line still (``Script`` below): one connection per thread.
"""

from __future__ import annotations

import hashlib
import threading
from functools import cache
from pathlib import Path

import hiredis
import redis
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from wartiket import pid

_client: redis.Redis | None = None
_client_pid: int | None = None


def get_redis() -> redis.Redis:
    global _client, _client_pid
    # A pool inherited over fork() would share sockets between processes: rebuild it per pid.
    if _client is None or _client_pid != pid.current():
        _client = redis.Redis.from_url(
            settings.REDIS_URL,
            decode_responses=True,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            health_check_interval=30,
            max_connections=256,
        )
        _client_pid = pid.current()
    return _client


def reset_redis() -> None:
    """Forget the client (tests that point settings at another server)."""
    global _client
    _client = None


INCLUDE = "--#include "


@cache
def _source(path: Path) -> str:
    """The script's text, with each ``--#include <file>`` line replaced by that file (relative to it).

    Redis runs one self-contained text per script; includes let two scripts share one copy of a rule
    (queueing/lua/lib/). One level deep, which is all the scripts need.
    """
    lines = path.read_text().splitlines(keepends=True)
    return "".join(
        (path.parent / line[len(INCLUDE) :].strip()).read_text() if line.startswith(INCLUDE) else line for line in lines
    )


class Script:
    """A Lua script run by EVALSHA on this thread's own connection; its source is sent again on NOSCRIPT.

    Why not redis-py's ``Script``: every command through ``Redis.execute_command`` takes a connection from
    the pool and gives it back, builds the command in Python and passes retry and event machinery. Measured
    in one process (docs/benchmarks.md), a reserve.lua call cost ~120 µs of CPU that way and ~33 µs as
    here: hiredis packs the command, and a connection kept per thread is written and read directly
    (``send_packed_command`` / ``read_response``, redis-py's own, so AUTH, TLS, the database, timeouts and
    the exception classes are unchanged: an outage raises what ``wartiket.outages`` knows).

    A call is never repeated after Redis may have run it (a script is not idempotent: it counts attempts).
    A kept connection that Redis closed while it sat idle (a restart) is noticed before anything is sent
    and replaced.
    """

    def __init__(self, client: redis.Redis, source: str):
        self.client = client
        self.script = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, keys=(), args=()):
        packed = [hiredis.pack_command(("EVALSHA", self.sha, len(keys), *keys, *args))]
        try:
            return _call(self.client, packed)
        except NoScriptError:
            # Redis restarted or flushed its scripts: load this one and run it again (it did not run).
            self.client.script_load(self.script)
            return _call(self.client, packed)


_lines = threading.local()


def _connection(client: redis.Redis) -> redis.Connection:
    """This thread's connection to ``client``'s server (per pid: a forked child never shares a socket)."""
    conn = getattr(_lines, "conn", None)
    if conn is not None and _lines.client is client and _lines.pid == pid.current():
        try:
            # Between two calls nothing may arrive: something readable is Redis closing the connection.
            if not conn.can_read(timeout=0):
                return conn
        except (RedisConnectionError, OSError):
            pass
        conn.disconnect()  # redis-py connects it again on the next send
        return conn
    pool = client.connection_pool
    conn = pool.connection_class(**pool.connection_kwargs)
    _lines.conn, _lines.client, _lines.pid = conn, client, pid.current()
    return conn


def _call(client: redis.Redis, packed: list[bytes]):
    conn = _connection(client)
    try:
        conn.send_packed_command(packed, check_health=False)
        return conn.read_response()
    except (RedisConnectionError, redis.TimeoutError):
        # Unknown whether the script ran: the caller hears the outage (503), nothing is sent twice.
        conn.disconnect()
        raise


def command(*args):
    """One Redis command on this thread's connection (see ``Script``): the war path's reads that are not a
    script (an identity lookup on a caller's first attempt). Never repeated, like a script."""
    return _call(get_redis(), [hiredis.pack_command(args)])


def lua(path: Path) -> Script:
    """The Lua script at ``path`` on this process' client, made once per client.

    The one way every script in the project is loaded (queueing/lua/, notifications/lua/).
    """
    client = get_redis()
    scripts = client.__dict__.setdefault("_wartiket_scripts", {})
    script = scripts.get(path)
    if script is None:
        script = scripts[path] = Script(client, _source(path))
    return script
