"""Redis going away under the pages: 503 with Retry-After and nothing written, never Django's 500.

The session store and the cache are django-redis; outages reach us from three places: a view's own
Redis call, django-redis' wrapped ConnectionInterrupted from a session read or write inside a view, and
the session save in SessionMiddleware's response phase (after the view has finished).
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from rest_framework.test import APIRequestFactory

from accounts.models import ApiToken, User
from accounts.services import challenge, identity
from queueing.models import Ticket
from tests.factory import make_slot, make_user, war_body
from tests.pow import solve
from wartiket import api_errors, middleware
from wartiket.tests.faults import fill_until_out_of_memory, make_read_only, point_app_at, raised, redis_server

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: a real refused connection
REGISTRATION = {
    "email": "baru@example.com",
    "full_name": "Pembeli Baru",
    "nik": "3174014101900001",
    "phone": "081234567890",
    "password1": "antre-dulu-2026",
    "password2": "antre-dulu-2026",
}


@pytest.fixture
def redis_cache_down(settings):
    caches = {alias: dict(config) for alias, config in django_settings.CACHES.items()}
    caches["default"]["LOCATION"] = DEAD_REDIS
    settings.CACHES = caches  # Django resets its cache connections on this change


def assert_unavailable(response):
    assert response.status_code == 503, response.content[:300]
    assert int(response["Retry-After"]) >= 1


def test_logging_in_while_the_session_store_is_down_is_503(client, redis_cache_down):
    user = make_user(password="antre-dulu-2026")
    response = client.post("/accounts/login/", {"username": user.email, "password": "antre-dulu-2026"})
    assert_unavailable(response)


def test_registering_while_the_session_store_is_down_is_503_and_writes_no_user(client, redis_cache_down):
    before = User.objects.count()
    response = client.post("/accounts/register/", {**REGISTRATION, "altcha": solve(challenge.new())})
    assert_unavailable(response)
    assert User.objects.count() == before


def test_a_session_save_failing_after_the_view_is_503_not_500(rf, redis_cache_down):
    from django.http import HttpResponse

    from wartiket.middleware import SessionMiddleware

    def view(request):
        request.session["seen"] = True  # the read failed quietly (empty session); the save will not
        return HttpResponse("ok")

    request = rf.get("/akun/")
    response = SessionMiddleware(view)(request)
    assert_unavailable(response)


# --- Redis out of memory, Redis read-only, PostgreSQL read-only: real servers put into those states ----------


@pytest.fixture
def private_redis(settings):
    """A redis-server of this test's own, used by the app for everything (war engine, cache, sessions)."""
    with redis_server() as (server, url):
        point_app_at(settings, url)
        yield server


def war_ready():
    """A buyer with a token whose identity Redis already caches, and an open slot, all in the app's Redis."""
    user = make_user(password="antre-dulu-2026")
    slot = make_slot()
    raw = ApiToken.issue(user)
    assert identity.principal_for_token(raw) is not None  # cached now: the attempt goes straight to reserve.lua
    return user, slot, raw


def assert_api_unavailable(response):
    assert_unavailable(response)
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "unavailable"


def assert_page_unavailable(response):
    assert_unavailable(response)
    assert response["Content-Type"].startswith("text/html")
    assert b"Layanan sedang sibuk" in response.content  # templates/503.html, not Django's 500


def test_redis_out_of_memory_is_503_on_the_war_and_the_login_page_not_500(private_redis, client):
    user, slot, raw = war_ready()
    session_buyer = Client()
    session_buyer.force_login(user)
    # Caches the session's identity, so the attempt after the fill reaches reserve.lua.
    assert session_buyer.post("/api/war", {"location_id": "nowhere", "time_slot": "10:00"}, "application/json")
    fill_until_out_of_memory(private_redis)

    # Token and session callers both meet OOM inside EVALSHA.
    body = war_body(slot)
    assert_api_unavailable(client.post("/api/war", body, "application/json", HTTP_AUTHORIZATION=f"Token {raw}"))
    assert_api_unavailable(session_buyer.post("/api/war", body, "application/json"))
    assert Ticket.objects.count() == 0

    # Logging in writes a new session: refused by Redis.
    login = client.post("/accounts/login/", {"username": user.email, "password": "antre-dulu-2026"})
    assert_page_unavailable(login)
    # An API token needs PostgreSQL only, so it is still issued.
    token = client.post("/api/auth/token", {"email": user.email, "password": "antre-dulu-2026"}, "application/json")
    assert token.status_code == 201, token.content


def test_redis_read_only_is_503_on_uncached_tokens_and_login_not_500(private_redis, client):
    user, slot, cached = war_ready()
    uncached = ApiToken.issue(user)
    make_read_only(private_redis)

    body = war_body(slot)
    # An uncached token is looked up in PostgreSQL, then the cache write is refused.
    assert_api_unavailable(client.post("/api/war", body, "application/json", HTTP_AUTHORIZATION=f"Token {uncached}"))
    # A cached one reaches reserve.lua, whose first write is refused.
    assert_api_unavailable(client.post("/api/war", body, "application/json", HTTP_AUTHORIZATION=f"Token {cached}"))
    assert Ticket.objects.count() == 0
    login = client.post("/accounts/login/", {"username": user.email, "password": "antre-dulu-2026"})
    assert_page_unavailable(login)
    # Reads still work: the replica serves its (stale) data.
    assert client.get("/api/slots").status_code == 200


@contextmanager
def postgres_read_only():
    """This connection (the one the in-process test client uses) in read-only mode, as on a hot standby."""
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")


@pytest.mark.django_db(transaction=True)
def test_postgres_read_only_is_503_on_login_register_and_token_not_500(client):
    user = make_user(password="antre-dulu-2026")
    before = User.objects.count()
    with postgres_read_only():
        # Logging in updates last_login.
        login = client.post("/accounts/login/", {"username": user.email, "password": "antre-dulu-2026"})
        assert_page_unavailable(login)
        register = client.post("/accounts/register/", {**REGISTRATION, "altcha": solve(challenge.new())})
        assert_page_unavailable(register)
        token = client.post("/api/auth/token", {"email": user.email, "password": "antre-dulu-2026"}, "application/json")
        assert_api_unavailable(token)
    assert User.objects.count() == before
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_a_bad_value_reaching_postgres_is_a_500_not_a_503():
    """Negative control: a DataError must not hide behind "busy, retry" (it did before outages.py)."""
    data_error = raised(lambda: Ticket.objects.filter(code="\x00").exists())
    request = APIRequestFactory().post("/api/tickets/x/cancel")
    assert api_errors.exception_handler(data_error, {"request": request}) is None  # DRF re-raises: a 500
    assert middleware.ServiceUnavailableMiddleware(lambda r: None).process_exception(request, data_error) is None
