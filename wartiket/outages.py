"""What counts as an outage of Redis or PostgreSQL: one definition for the whole project."""

from __future__ import annotations

import redis
from redis.exceptions import OutOfMemoryError

# Redis cannot answer (connection, timeout, loading a dump), or cannot take writes (a replica after a
# failover, out of memory under noeviction): all of them pass, none of them is the caller's fault.
REDIS_OUTAGES = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.ReadOnlyError,
    OutOfMemoryError,
)
