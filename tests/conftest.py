"""Fixtures of the browser tests (tests/test_browser.py, tests/test_pages_phone.py)."""

from __future__ import annotations

import pytest

from tests.browser import Recorder, chromium, daphne_server, live_quota_process, require_chromium


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker):
    """daphne + live_quota for the whole module (each test's data is its own; the processes are shared)."""
    with django_db_blocker.unblock(), daphne_server() as base, live_quota_process():
        yield base


@pytest.fixture
def recorder(request):
    return Recorder(request.node.name)
