"""Redis going away under the pages: 503 with Retry-After and nothing written, never Django's 500.

The session store and the cache are django-redis; outages reach us from three places: a view's own
Redis call, django-redis' wrapped ConnectionInterrupted from a session read or write inside a view, and
the session save in SessionMiddleware's response phase (after the view has finished).
"""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from accounts.models import User
from tests.factory import make_user

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: a real refused connection


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
    response = client.post(
        "/accounts/register/",
        {
            "email": "baru@example.com",
            "full_name": "Pembeli Baru",
            "nik": "3174014101900001",
            "phone": "081234567890",
            "password1": "antre-dulu-2026",
            "password2": "antre-dulu-2026",
        },
    )
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
