"""Shared fixtures: real PostgreSQL (pytest-django's test database) and real Redis (database 15)."""

from __future__ import annotations

import pytest

from accounts.services import identity
from notifications.services import publisher
from queueing.services import catalog, clock, heal, warroom
from wartiket.redis_client import get_redis, reset_redis


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's test database, and at its end this process's identity listener stopped first:
    its open connection would keep the test database from being dropped."""
    yield
    identity.listener.stop()


@pytest.fixture(autouse=True)
def clean_redis(settings):
    """Every test starts from an empty Redis database (never the one `make run` uses).

    An empty Redis beside an empty test database is a correct state, so it is marked as built here
    (heal's generation); tests of self-healing take that mark away, as a Redis restart would. Background
    healing threads are off in this process: they would read PostgreSQL outside the test's transaction.
    Servers the tests start as processes heal as in production.
    """
    assert settings.TESTING, "tests must run with WAR_TESTING settings"
    settings.WAR_SELF_HEAL = False
    # Ticket events a previous test queued are published now, into its Redis, not later into this one's.
    publisher.flush()
    reset_redis()
    get_redis().flushdb()
    heal.mark_built()
    catalog._local.clear()
    identity.local.clear()  # this process's copy of Redis' identity entries, emptied with them
    clock._offset_ms = None
    # A test that took Redis away leaves the site-wide error counter waiting to retry: start counting at once.
    warroom._retry_at = 0.0
    warroom._pending.clear()
    yield
    publisher.flush()
    reset_redis()
