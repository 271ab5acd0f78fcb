"""Bad input never reaches a 500, and every error under /api/ is JSON with a stable code.

Django's own errors included (its 400, 403, 404, 413, 500, an over-long URI); pages get the branded
templates instead. Run in-process against the real PostgreSQL and Redis, plus the real web server at the end.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from django.test import Client
from rest_framework.test import APIClient

from queueing.models import new_ticket_code
from queueing.services.errors import ERRORS
from tests.factory import make_slot, make_user, token_client, war_body
from tests.live import web_server

pytestmark = pytest.mark.django_db

DEEP = "[" * 5000  # nested past Python's recursion limit: json raised RecursionError (a 500)
DEEP_SMALL = "[" * 3000  # the same, within the war endpoint's 4 KB body limit


def assert_api_error(response, status: int, code: str):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    body = response.json()
    assert body["code"] == code
    assert body["detail"] == str(ERRORS[code][1])
    assert ERRORS[code][0] == status  # the one table agrees


def quiet_client(**kwargs) -> APIClient:
    """A client that receives a 500 as a response instead of the test seeing the exception."""
    return APIClient(raise_request_exception=False, **kwargs)


def test_json_nested_too_deep_is_400_malformed_json_on_token_and_war():
    assert_api_error(
        quiet_client().post("/api/auth/token", DEEP, content_type="application/json"), 400, "malformed_json"
    )
    buyer = make_user()
    by_token = token_client(buyer)
    by_token.raise_request_exception = False
    # Token and session callers: the war view's own json.loads.
    assert_api_error(by_token.post("/api/war", DEEP_SMALL, content_type="application/json"), 400, "malformed_json")
    by_session = quiet_client()
    by_session.force_login(buyer)
    assert_api_error(by_session.post("/api/war", DEEP_SMALL, content_type="application/json"), 400, "malformed_json")
    # Over the war endpoint's body limit the size rule answers first.
    assert_api_error(by_token.post("/api/war", DEEP, content_type="application/json"), 413, "too_large")


def test_a_body_over_the_upload_limit_is_413_too_large_json():
    huge = json.dumps({"email": "a@example.com", "password": "x" * 2_000_000})
    assert_api_error(quiet_client().post("/api/auth/token", huge, content_type="application/json"), 413, "too_large")


def test_a_page_form_over_the_upload_limit_is_a_branded_413():
    response = Client().post("/accounts/login/", {"username": "a@example.com", "password": "x" * 2_000_000})
    assert response.status_code == 413
    assert b'name="viewport"' in response.content and b"Isi permintaan terlalu besar" in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/nope",
        "/api/slots/abc",
        "/api/slots/-1",
        "/api/tickets/%00/cancel",
        "/api/tickets/ABCD%2fEFGH-JKMN/cancel",
        "/api/tickets/abcd-efgh-jkmn/cancel",  # lower case: not how codes are printed
        "/api/tickets/ABCD-EFGH-IJKL/cancel",  # I and L are not in the alphabet
    ],
)
def test_unknown_api_paths_and_malformed_ticket_codes_are_404_json(path, django_assert_num_queries):
    client = token_client(make_user())
    client.raise_request_exception = False
    # Answered without SQL: a NUL byte in a ticket code used to reach PostgreSQL as a DataError (then a 503).
    with django_assert_num_queries(0):
        response = client.post(path) if "cancel" in path else client.get(path)
    assert_api_error(response, 404, "not_found")


def test_well_formed_unknown_ids_are_404_not_found_from_the_views():
    client = token_client(make_user())
    assert_api_error(client.post(f"/api/tickets/{new_ticket_code()}/cancel"), 404, "not_found")
    assert_api_error(client.get("/api/slots/99999999999999999999999"), 404, "not_found")  # beyond bigint


def test_with_debug_on_django_404s_under_api_are_still_json(settings):
    settings.DEBUG = True  # Django answers with its technical HTML page then, not handler404
    assert_api_error(quiet_client().get("/api/nope"), 404, "not_found")


def test_method_not_allowed_is_405_json_with_allow():
    response = quiet_client().post("/api/slots")
    assert_api_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_an_over_long_uri_is_414():
    assert_api_error(quiet_client().get("/api/slots?q=" + "a" * 3000), 414, "uri_too_long")
    page = Client().get("/?q=" + "a" * 3000)
    assert page.status_code == 414 and b"Alamat terlalu panjang" in page.content
    assert quiet_client().get("/api/slots?q=" + "a" * 1000).status_code == 200  # negative control


@pytest.mark.urls("wartiket.tests.urls_boom")
def test_a_bug_is_a_500_json_under_api_and_the_branded_page_elsewhere():
    assert_api_error(quiet_client().get("/api/boom"), 500, "server_error")
    page = Client(raise_request_exception=False).get("/boom/")
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")
    assert b"Terjadi kesalahan di server" in page.content and b'name="viewport"' in page.content


def test_pages_get_branded_404_and_csrf_403():
    missing = Client().get("/nowhere/")
    assert missing.status_code == 404
    assert b"Halaman tidak ditemukan" in missing.content and b'name="viewport"' in missing.content
    expired_form = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "a", "password": "b"})
    assert expired_form.status_code == 403
    assert b"Sesi formulir kedaluwarsa" in expired_form.content


def test_api_csrf_failure_is_403_csrf_failed():
    buyer = make_user()
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(buyer)
    assert_api_error(browser.post("/api/war", war_body(make_slot()), format="json"), 403, "csrf_failed")


@pytest.mark.django_db(transaction=True)
def test_through_the_web_server_bad_input_gets_json_codes_not_500():
    """The same answers from the production HTTP server (its own parsing and limits in front of Django)."""

    def call(path, body=None, content_type="application/json"):
        method = "POST" if body is not None else "GET"
        request = urllib.request.Request(base + path, data=body, method=method)  # noqa: S310 (loopback only)
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 (loopback only)
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    with web_server(workers=1, threads=2) as base:
        for path, body, status, code in [
            ("/api/auth/token", DEEP.encode(), 400, "malformed_json"),
            ("/api/auth/token", b'{"password": "' + b"x" * 2_000_000 + b'"}', 413, "too_large"),
            ("/api/nope", None, 404, "not_found"),
            ("/api/tickets/%00/cancel", b"", 404, "not_found"),
            ("/api/slots?q=" + "a" * 3000, None, 414, "uri_too_long"),
        ]:
            got, headers, content = call(path, body)
            assert (got, headers["Content-Type"]) == (status, "application/json"), (path, content[:200])
            assert json.loads(content)["code"] == code
