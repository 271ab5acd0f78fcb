"""POST /api/war as one plain view (queueing.api.war): token and session callers alike, CSRF for sessions only,
refusals not logged (the LOGGING filter, not a private attribute), and no PostgreSQL for a refusal."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.conf import settings
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory

from accounts.models import ApiToken
from queueing.models import Ticket
from queueing.services import warroom
from tests.factory import make_slot, make_user, token_client, war_body
from wartiket.logfilters import QuietClientErrors
from wartiket.redis_client import get_redis, reset_redis

pytestmark = pytest.mark.django_db


def post(client, body, **extra):
    return client.post("/api/war", json.dumps(body), content_type="application/json", **extra)


def session_client(user, *, with_csrf: bool) -> tuple[Client, dict]:
    """A signed-in browser that enforces CSRF like a real one; with the form's token in its header or not."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    if not with_csrf:
        return browser, {}
    request = RequestFactory().get("/")
    token = get_token(request)
    browser.cookies["csrftoken"] = request.META["CSRF_COOKIE"]
    return browser, {"HTTP_X_CSRFTOKEN": token}


def test_a_token_caller_and_a_session_caller_each_get_a_ticket():
    slot = make_slot(quota_size=5)
    by_token = post(token_client(make_user()), war_body(slot))
    browser, csrf = session_client(make_user(), with_csrf=True)
    by_session = post(browser, war_body(slot), **csrf)
    assert (by_token.status_code, by_token.json()["code"]) == (201, "reserved")
    assert (by_session.status_code, by_session.json()["code"]) == (201, "reserved")
    assert by_session["Content-Type"] == by_token["Content-Type"] == "application/json"
    assert Ticket.objects.count() == 2


def test_a_session_without_the_csrf_token_is_refused_and_writes_nothing_a_token_needs_none():
    slot = make_slot(quota_size=5)
    buyer = make_user()
    browser, _ = session_client(buyer, with_csrf=False)
    refused = post(browser, war_body(slot))
    assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed")
    assert refused.json()["detail"]
    assert Ticket.objects.count() == 0
    # Negative control: the same enforcing client with a token instead of the cookie is not CSRF-checked.
    token_browser = token_client(buyer)
    token_browser.handler.enforce_csrf_checks = True
    assert post(token_browser, war_body(slot)).status_code == 201


def test_errors_keep_their_codes_statuses_and_headers():
    slot = make_slot(opens_in=3600)
    anonymous = post(Client(), war_body(slot))
    assert (anonymous.status_code, anonymous.json()["code"], anonymous["WWW-Authenticate"]) == (
        401,
        "not_authenticated",
        "Token",
    )
    malformed = Client().post("/api/war", war_body(slot), content_type="application/json", HTTP_AUTHORIZATION="Token")
    assert (malformed.status_code, malformed.json()["code"]) == (401, "not_authenticated")
    buyer = token_client(make_user())
    early = post(buyer, war_body(slot))
    assert (early.status_code, early.json()["code"]) == (403, "too_early")
    assert int(early["Retry-After"]) >= 1 and early.json()["opens_at"]
    invalid = post(buyer, {"location_id": "graha dipta"})
    assert (invalid.status_code, invalid.json()["code"]) == (400, "invalid")
    assert set(invalid.json()["errors"]) == {"location_id", "time_slot"}
    english = post(buyer, {}, HTTP_ACCEPT_LANGUAGE="en").json()["errors"]
    assert english["location_id"] == ["This field is required."]
    assert buyer.get("/api/war")["Allow"] == "POST"
    empty = buyer.post("/api/war")
    assert (empty.status_code, empty.json()["code"]) == (400, "invalid")


def test_every_refusal_made_by_the_view_is_counted_in_the_war_room():
    warroom._pending.clear()
    warroom._retry_at = 0.0  # an earlier test's Redis outage may still be waited out
    before = get_redis().hgetall(warroom.ERRORS_KEY)
    slot = make_slot()
    post(Client(), war_body(slot))
    post(token_client(make_user()), {"location_id": "x"})
    after = get_redis().hgetall(warroom.ERRORS_KEY)
    for code in ("not_authenticated", "invalid"):
        assert int(after.get(code, 0)) == int(before.get(code, 0)) + 1, code


def test_a_refusal_makes_no_postgresql_query(django_assert_num_queries):
    slot = make_slot(quota_size=1, opens_in=3600)
    buyer = token_client(make_user())
    browser, csrf = session_client(make_user(), with_csrf=True)
    post(buyer, war_body(slot)), post(browser, war_body(slot), **csrf)  # identity caches warm
    with django_assert_num_queries(0):
        assert post(buyer, war_body(slot)).json()["code"] == "too_early"
        assert post(browser, war_body(slot), **csrf).json()["code"] == "too_early"


def war_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "django.request" and "/api/war" in r.getMessage()]


def test_war_refusals_are_not_logged_other_4xx_and_war_outages_are(caplog, settings):
    slot = make_slot(quota_size=1, opens_in=3600)
    buyer = token_client(make_user())
    caplog.set_level(logging.INFO)
    assert post(buyer, war_body(slot)).status_code == 403
    assert post(Client(), war_body(slot)).status_code == 401
    assert war_lines(caplog) == []
    # Negative controls: a 4xx elsewhere is still logged; so is a 503 of the war itself.
    assert Client().get("/api/tickets").status_code == 401
    assert any(r.name == "django.request" and "/api/tickets" in r.getMessage() for r in caplog.records)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    reset_redis()
    try:
        assert post(buyer, war_body(slot)).status_code == 503
    finally:
        reset_redis()
        # The war room's counter waits out an outage (RETRY_SECONDS): not into the next test.
        warroom._pending.clear()
        warroom._retry_at = 0.0
    assert [r.levelno for r in war_lines(caplog)] == [logging.ERROR]


def test_it_is_the_logging_filter_that_silences_them(caplog):
    """Without the filter configured in LOGGING the same refusal is logged: nothing else hides it."""
    slot = make_slot(quota_size=1, opens_in=3600)
    buyer = token_client(make_user())
    logger = logging.getLogger("django.request")
    configured = [f for f in logger.filters if isinstance(f, QuietClientErrors)]
    assert configured and configured[0].paths == {"/api/war"}
    caplog.set_level(logging.INFO)
    for f in configured:
        logger.removeFilter(f)
    try:
        assert post(buyer, war_body(slot)).status_code == 403
    finally:
        for f in configured:
            logger.addFilter(f)
    assert [r.levelno for r in war_lines(caplog)] == [logging.WARNING]


def wsgi_call(method: str, path: str, body: bytes = b"", **environ) -> tuple[int, dict, bytes]:
    """One request through the WSGI application gunicorn serves (wartiket.wsgi), not the test client's handler."""
    from wsgiref.util import setup_testing_defaults

    from wartiket.wsgi import application

    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_X_FORWARDED_PROTO": "https",
        **environ,
    }
    setup_testing_defaults(env)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    chunks = application(env, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], content


@pytest.mark.django_db(transaction=True)
def test_war_posts_take_the_short_middleware_chain_and_keep_every_check():
    """gunicorn's application sends POST /api/war through WAR_MIDDLEWARE (wartiket/wsgi.py), the rest through all."""
    slot = make_slot(quota_size=2)
    user = make_user()
    token = ApiToken.issue(user)
    body = json.dumps(war_body(slot)).encode()

    status, headers, content = wsgi_call("POST", "/api/war", body, HTTP_AUTHORIZATION=f"Token {token}")
    assert (status, json.loads(content)["code"]) == (201, "reserved"), content
    # The security middleware ran; the frame-options middleware (pages only) did not.
    assert headers["X-Content-Type-Options"] == "nosniff" and "X-Frame-Options" not in headers
    status, headers, _ = wsgi_call("GET", "/api/time")
    assert status == 200 and headers["X-Frame-Options"] == "DENY"

    # Without Django's CSRF middleware the view's own check still refuses a session caller with no token.
    session = Client()
    session.force_login(make_user())
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.cookies[settings.SESSION_COOKIE_NAME].value}"
    status, _, content = wsgi_call("POST", "/api/war", body, HTTP_COOKIE=cookie)
    assert (status, json.loads(content)["code"]) == (403, "csrf_failed")
    assert Ticket.objects.filter(slot=slot).count() == 1
    # Refused before the body is read: nonsense is still a JSON error with its code.
    status, _, content = wsgi_call("POST", "/api/war", b"{", HTTP_AUTHORIZATION=f"Token {token}")
    assert (status, json.loads(content)["code"]) == (400, "malformed_json")
