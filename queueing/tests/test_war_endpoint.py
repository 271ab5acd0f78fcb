"""POST /api/war, one endpoint (queueing.war_endpoint): token and session callers alike, CSRF for sessions only,
refusals not logged, no PostgreSQL for a refusal; and production's WSGI application, which answers it before
Django, answering exactly as Django does."""

from __future__ import annotations

import io
import json
import logging
from wsgiref.util import setup_testing_defaults

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory

from accounts.models import ApiToken
from queueing.models import Ticket
from queueing.services import warroom
from tests.factory import make_slot, make_user, token_client, war_body
from wartiket import wsgi  # at collection: importing it sets Django up again, which reconfigures logging
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


# --- Production's WSGI application answers POST /api/war before Django: exactly as Django would ---------------

# Headers only one of the two paths sends, none of them about the answer: the frame-options middleware
# (pages), and what the server adds.
NOT_COMPARED = {"X-Frame-Options", "Date", "Server"}


def through_django(method: str, path: str, body: bytes = b"", **environ) -> tuple[int, dict, bytes]:
    """The same request through Django's own handler and its full middleware (what every other URL gets),
    made now: middleware reads its settings when the handler is built."""
    return wsgi_call(method, path, body, app=WSGIHandler(), **environ)


def comparable(status: int, headers: dict, content: bytes) -> tuple:
    body = json.loads(content)
    body.pop("server_time", None)  # the server's clock at the moment of each answer
    return status, body, {k.lower(): v for k, v in headers.items() if k not in NOT_COMPARED}


def session_cookie(user, *, csrf: bool) -> dict:
    browser = Client()
    browser.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"
    if not csrf:
        return {"HTTP_COOKIE": cookie}
    request = RequestFactory().get("/")
    token = get_token(request)
    return {
        "HTTP_COOKIE": f"{cookie}; {settings.CSRF_COOKIE_NAME}={request.META['CSRF_COOKIE']}",
        "HTTP_X_CSRFTOKEN": token,
        "HTTP_ORIGIN": "https://testserver",
        "HTTP_HOST": "testserver",
    }


@pytest.mark.django_db(transaction=True)
def test_the_production_application_answers_every_war_request_as_django_does(settings):
    """Status, body and headers of the fast path (wartiket.wsgi → queueing.war_endpoint) equal Django's own
    answer to the same request, refusal by refusal, with production's security headers on."""
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    early = make_slot(opens_in=3600, label="13:00")
    sold = make_slot(quota_size=1, label="10:00")
    buyer = make_user()
    token = ApiToken.issue(buyer)
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}
    assert wsgi_call("POST", "/api/war", json.dumps(war_body(sold)).encode(), **auth)[0] == 201
    other = {"HTTP_AUTHORIZATION": f"Token {ApiToken.issue(make_user())}"}

    def body(slot, **extra) -> bytes:
        return json.dumps(war_body(slot, **extra)).encode()

    cases = {
        "sold out": (body(sold), other),
        "already reserved": (body(sold), auth),
        "too early": (body(early), auth),
        "too early, in English": (body(early), {**auth, "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}),
        "unknown slot": (json.dumps({"location_id": "nowhere", "time_slot": "10:00"}).encode(), auth),
        "invalid fields": (json.dumps({"location_id": "graha dipta"}).encode(), auth),
        "invalid, in English": (b"{}", {**auth, "HTTP_ACCEPT_LANGUAGE": "en"}),
        "not an object": (b"[1]", auth),
        "malformed JSON": (b"{", auth),
        "NaN": (b'{"location_id": NaN}', auth),
        "not UTF-8": (b'{"location_id": "\xff"}'.replace(b"\\xff", b"\xff"), auth),
        "empty body": (b"", auth),
        "not JSON": (b"location_id=x", {**auth, "CONTENT_TYPE": "application/x-www-form-urlencoded"}),
        "too large": (b"{}", {**auth, "CONTENT_LENGTH": "5000"}),
        "someone else's user_id": (body(early, user_id=buyer.pk + 1000), auth),
        "no credentials": (body(early), {}),
        "a bare Token header": (body(early), {"HTTP_AUTHORIZATION": "Token"}),
        "an unknown token": (body(early), {"HTTP_AUTHORIZATION": "Token not-a-real-token"}),
        "a Basic header": (body(early), {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}),
        "a session with its CSRF token": (body(early), session_cookie(make_user(), csrf=True)),
        "a session without its CSRF token": (body(early), session_cookie(make_user(), csrf=False)),
        "a session posting a form": (
            b"location_id=graha-dipta&time_slot=13:00",
            {**session_cookie(make_user(), csrf=True), "CONTENT_TYPE": "application/x-www-form-urlencoded"},
        ),
        "a session cookie that is no session": (body(early), {"HTTP_COOKIE": f"{settings.SESSION_COOKIE_NAME}=x"}),
    }
    for name, (content, environ) in cases.items():
        fast = wsgi_call("POST", "/api/war", content, **environ)
        django = through_django("POST", "/api/war", content, **environ)
        assert comparable(*fast) == comparable(*django), name
        assert fast[0] >= 400 or name == "already reserved", (name, fast)
    # Both paths answer English when asked, and carry HSTS (the request came through the HTTPS proxy).
    english = wsgi_call("POST", "/api/war", b"{}", **{**auth, "HTTP_ACCEPT_LANGUAGE": "en"})
    assert json.loads(english[2])["errors"]["location_id"] == ["This field is required."]
    assert english[1]["Content-Language"] == "en" and english[1]["Strict-Transport-Security"].startswith("max-age")

    # A new ticket: same status, same body shape, same headers (two buyers: each path reserves once).
    fresh = make_slot(quota_size=5, label="15:00")
    fast = wsgi_call("POST", "/api/war", body(fresh), HTTP_AUTHORIZATION=f"Token {ApiToken.issue(make_user())}")
    django = through_django("POST", "/api/war", body(fresh), HTTP_AUTHORIZATION=f"Token {ApiToken.issue(make_user())}")
    assert fast[0] == django[0] == 201
    assert json.loads(fast[2]).keys() == json.loads(django[2]).keys()
    assert json.loads(fast[2])["ticket"].keys() == json.loads(django[2])["ticket"].keys()
    assert comparable(*fast)[2].keys() - {"content-length"} == comparable(*django)[2].keys() - {"content-length"}
    assert Ticket.objects.filter(slot=fresh).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_production_application_leaves_to_django_what_it_should_not_answer_itself(settings):
    slot = make_slot(opens_in=3600)
    auth = {"HTTP_AUTHORIZATION": f"Token {ApiToken.issue(make_user())}"}
    content = json.dumps(war_body(slot)).encode()
    # Another method: Django's 405 with Allow.
    status, headers, answer = wsgi_call("GET", "/api/war", **auth)
    assert (status, json.loads(answer)["code"], headers["Allow"]) == (405, "method_not_allowed", "POST")
    # Plain HTTP where HTTPS is required goes to Django (whose security middleware redirects it; its
    # middleware read the setting at boot, so here only the hand-over shows: Django's frame header).
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert "X-Frame-Options" in wsgi_call("POST", "/api/war", content, HTTP_X_FORWARDED_PROTO="http", **auth)[1]
    # Through the proxy's HTTPS the fast path answers it itself (the war is not open yet).
    status, headers, answer = wsgi_call("POST", "/api/war", content, **auth)
    assert (status, json.loads(answer)["code"]) == (403, "too_early") and "X-Frame-Options" not in headers
    # An over-long query string: Django's JSON 414.
    status, _, answer = wsgi_call("POST", "/api/war", content, QUERY_STRING="q=" + "x" * 3000, **auth)
    assert (status, json.loads(answer)["code"]) == (414, "uri_too_long")


@pytest.mark.django_db(transaction=True)
def test_outages_and_bugs_on_the_fast_path_are_json_503_and_500_and_logged(settings, caplog, monkeypatch):
    slot = make_slot(opens_in=3600)
    auth = {"HTTP_AUTHORIZATION": f"Token {ApiToken.issue(make_user())}"}
    content = json.dumps(war_body(slot)).encode()
    caplog.set_level(logging.INFO)
    assert wsgi_call("POST", "/api/war", content, **auth)[0] == 403
    assert war_lines(caplog) == []  # a refusal: not logged
    redis_url, settings.REDIS_URL = settings.REDIS_URL, "redis://127.0.0.1:1/0"
    reset_redis()
    try:
        fast = wsgi_call("POST", "/api/war", content, **auth)
        django = through_django("POST", "/api/war", content, **auth)
    finally:
        settings.REDIS_URL = redis_url
        reset_redis()
        warroom._pending.clear()
        warroom._retry_at = 0.0
    assert comparable(*fast) == comparable(*django)
    assert (fast[0], json.loads(fast[2])["code"], fast[1]["Retry-After"]) == (
        503,
        "unavailable",
        str(settings.WAR_RETRY_AFTER_SECONDS),
    )
    assert [r.levelno for r in war_lines(caplog)] == [logging.ERROR, logging.ERROR]  # each path logged its 503

    # A bug is a JSON 500, logged with its traceback, never an HTML page or a dropped connection.
    from queueing.services import reservations

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the war path")

    monkeypatch.setattr(reservations, "reserve", broken)
    caplog.clear()
    status, headers, answer = wsgi_call("POST", "/api/war", content, **auth)
    assert (status, json.loads(answer)["code"], headers["Content-Type"]) == (500, "server_error", "application/json")
    [line] = war_lines(caplog)
    assert line.levelno == logging.ERROR and "a bug in the war path" in str(line.exc_info[1])


def wsgi_call(method: str, path: str, body: bytes = b"", *, app=None, **environ) -> tuple[int, dict, bytes]:
    """One request through the WSGI application the web server serves (wartiket.wsgi), or ``app``."""
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

    chunks = (app or wsgi.application)(env, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], content


@pytest.mark.django_db(transaction=True)
def test_a_thread_checks_its_database_connection_once_a_second_not_before_every_reservation(monkeypatch):
    """Django's CONN_HEALTH_CHECKS run a SELECT 1 at the first use in every request; the war path trusts a
    connection checked within HEALTH_CHECK_EVERY, so an opening storm commits tickets without it."""
    from django.db import connections

    from queueing import war_endpoint

    checks = []
    wrapper = type(connections["default"])
    is_usable = wrapper.is_usable

    def counted(self):
        checks.append(1)
        return is_usable(self)

    monkeypatch.setattr(wrapper, "is_usable", counted)
    slot = make_slot(quota_size=20)

    def reserve_six() -> None:
        for _ in range(6):
            token = ApiToken.issue(make_user())
            status, _, content = wsgi_call("POST", "/api/war", json.dumps(war_body(slot)).encode(),
                                           HTTP_AUTHORIZATION=f"Token {token}")  # fmt: skip
            assert status == 201, content

    monkeypatch.setattr(war_endpoint, "HEALTH_CHECK_EVERY", 60.0)
    reserve_six()
    assert len(checks) <= 1
    # Negative control: trusted for no time at all, the connection is checked before every reservation.
    checks.clear()
    monkeypatch.setattr(war_endpoint, "HEALTH_CHECK_EVERY", 0.0)
    reserve_six()
    assert len(checks) >= 5
    assert Ticket.objects.filter(slot=slot).count() == 12
