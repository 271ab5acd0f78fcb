"""The one Redis client the war engine uses (redis-py with hiredis), shared per process.

Separate from django-redis' cache client so the hot path has its own pool and plain ``str`` replies.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import redis
from django.conf import settings

_client: redis.Redis | None = None
_client_pid: int | None = None


def get_redis() -> redis.Redis:
    global _client, _client_pid
    # A pool inherited over fork() would share sockets between processes: rebuild it per pid.
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(
            settings.REDIS_URL,
            decode_responses=True,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            health_check_interval=30,
            max_connections=256,
        )
        _client_pid = os.getpid()
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


def lua(path: Path):
    """The Lua script at ``path`` as a redis-py Script on this process' client, registered once.

    It runs by EVALSHA and re-sends its source only when Redis answers NOSCRIPT (after a restart). The one
    way every script in the project is loaded (queueing/lua/, notifications/lua/).
    """
    client = get_redis()
    scripts = client.__dict__.setdefault("_wartiket_scripts", {})
    script = scripts.get(path)
    if script is None:
        script = scripts[path] = client.register_script(_source(path))
    return script
