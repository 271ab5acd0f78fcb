"""Shared fixtures: real PostgreSQL (pytest-django's test database) and real Redis (database 15)."""

from __future__ import annotations

import pytest
from django.conf import settings

from queueing.services import catalog, clock
from tests.factory import make_user, token_client
from wartiket.redis_client import get_redis, reset_redis


@pytest.fixture(autouse=True)
def clean_redis():
    """Every test starts from an empty Redis database (never the one `make run` uses)."""
    assert settings.TESTING, "tests must run with WAR_TESTING settings"
    reset_redis()
    get_redis().flushdb()
    catalog._local.clear()
    clock._offset_ms = None
    yield
    reset_redis()


@pytest.fixture
def user(db):
    return make_user()


@pytest.fixture
def client_for(db):
    return token_client
