"""The server clock: Redis TIME. App servers' clocks never decide who is early."""

from __future__ import annotations

import datetime
import time

from queueing.services.store import ms_to_datetime
from wartiket.redis_client import get_redis

# Offset of Redis' clock from this process' clock, learned from every script reply. Used only to
# *pick* a default slot (the script re-checks every time with TIME); never to admit anyone.
_offset_ms: float | None = None


def observe(redis_now_ms: int) -> None:
    global _offset_ms
    _offset_ms = redis_now_ms - time.time() * 1000


def redis_now_ms() -> int:
    seconds, micros = get_redis().time()
    now_ms = seconds * 1000 + micros // 1000
    observe(now_ms)
    return now_ms


def redis_now() -> datetime.datetime:
    return ms_to_datetime(redis_now_ms())


def estimated_now_ms() -> int:
    if _offset_ms is None:
        return redis_now_ms()
    return int(time.time() * 1000 + _offset_ms)
