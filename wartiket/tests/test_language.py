"""One language per answer: the API follows Accept-Language (else Indonesian), pages the switcher's cookie.

Content-Language always names the language the body is in. And the status line says what 429 is.
"""

from __future__ import annotations

import http.client
import json
import sys
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiToken
from tests.factory import make_slot, make_user, token_client, war_body
from tests.live import free_port, served, web_server
from wartiket.redis_client import reset_redis

pytestmark = pytest.mark.django_db

EN, ID = {"HTTP_ACCEPT_LANGUAGE": "en"}, {}


def answer(response) -> tuple[str, str]:
    return response["Content-Language"], response.json()["detail"]


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("en", "en"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR, en;q=0.5", "en"),
        ("fr", "id"),
        ("*", "id"),
        ("", "id"),
        ("id-ID,id;q=0.9,en;q=0.8", "id"),
    ],
)
def test_the_api_speaks_the_first_accepted_language_it_knows_else_indonesian(header, language):
    response = APIClient().post(
        "/api/auth/token", {"email": "x@example.com", "password": "nope"}, format="json", HTTP_ACCEPT_LANGUAGE=header
    )
    assert response.status_code == 401
    expected = {"en": "Email or password is wrong.", "id": "Email atau kata sandi salah."}[language]
    assert answer(response) == (language, expected)
    assert "Accept-Language" in response["Vary"]


def test_every_kind_of_api_error_follows_accept_language(settings):
    buyer = token_client(make_user())
    slot = make_slot(opens_in=3600)
    cases = {
        # the war view's refusals, and its body parsing
        "too_early": lambda lang: buyer.post("/api/war", war_body(slot), format="json", **lang),
        "malformed_json": lambda lang: buyer.post("/api/war", "{", content_type="application/json", **lang),
        # DRF's field errors inside, our message outside
        "invalid": lambda lang: APIClient().post("/api/auth/token", {}, format="json", **lang),
        # the authentication classes
        "not_authenticated": lambda lang: APIClient(HTTP_AUTHORIZATION="Token wt_nope").get("/api/tickets", **lang),
        # Django's handler404 and the middleware's 414
        "not_found": lambda lang: APIClient().get("/api/nope", **lang),
        "uri_too_long": lambda lang: APIClient().get("/api/slots?q=" + "a" * 3000, **lang),
    }
    for code, call in cases.items():
        english, indonesian = call(EN), call(ID)
        assert english.json()["code"] == indonesian.json()["code"] == code
        assert english["Content-Language"] == "en" and indonesian["Content-Language"] == "id", code
        assert english.json()["detail"] != indonesian.json()["detail"], code
    field_errors = cases["invalid"](EN).json()["errors"]
    assert field_errors["email"] == ["This field is required."]
    assert cases["invalid"](ID).json()["errors"]["email"] != ["This field is required."]

    # An outage answered by the middleware (Redis refuses the token lookup) speaks the request's language too.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    reset_redis()
    down = buyer.post("/api/war", war_body(slot), format="json", **EN)
    assert (down.status_code, down["Content-Language"]) == (503, "en")
    assert down.json()["detail"] == "The service is busy. Try again in a few seconds."


def test_the_api_ignores_the_page_language_cookie_and_pages_ignore_accept_language():
    api = APIClient()
    api.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "id"
    assert api.get("/api/nope", **EN)["Content-Language"] == "en"

    phone_in_english = Client().get("/nowhere/", **EN)  # many buyers' phones: the site still speaks Indonesian
    assert phone_in_english["Content-Language"] == "id"
    assert b"Halaman tidak ditemukan" in phone_in_english.content
    chose_english = Client()
    chose_english.cookies[django_settings.LANGUAGE_COOKIE_NAME] = "en"
    page = chose_english.get("/nowhere/")
    assert page["Content-Language"] == "en"
    assert b"Page not found" in page.content and b"Halaman tidak ditemukan" not in page.content


def status_line(base: str, path: str, headers: dict, body: bytes) -> tuple[int, str]:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.reason
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_429_says_too_many_requests_on_daphne_and_the_web_server():
    headers = {"Authorization": f"Token {ApiToken.issue(make_user())}", "Content-Type": "application/json"}
    # Two attempts with a limit of one: the second is rate-limited (the first is too early).
    body = json.dumps(war_body(make_slot(opens_in=3600))).encode()
    port = free_port()
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wartiket.asgi:application"]
    with served(daphne, port, quiet=True, WAR_RATE_LIMIT_USER="1") as base:
        lines = [status_line(base, "/api/war", headers, body) for _ in range(2)]
    assert lines[-1] == (429, "Too Many Requests"), lines
    with web_server(workers=1, threads=2, WAR_RATE_LIMIT_USER="1") as base:
        lines = [status_line(base, "/api/war", headers, body) for _ in range(2)]
    assert lines[-1] == (429, "Too Many Requests"), lines
