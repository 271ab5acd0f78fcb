"""Failed-login lockout (django-axes on Redis), token names, and the sign-up limit per address.

Through Django's full middleware stack on real PostgreSQL and Redis: no part of axes or our Redis is faked.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.validators import make_nik
from tests.factory import make_user
from tests.pow import solved_header

pytestmark = pytest.mark.django_db

PASSWORD = "antre-dulu-2026"


def token_request(email: str, password: str, *, ip: str = "10.20.30.40", name: str | None = None, **headers):
    body = {"email": email, "password": password} | ({"name": name} if name else {})
    return APIClient().post("/api/auth/token", body, format="json", REMOTE_ADDR=ip, **headers)


def token_request_solving(email: str, password: str, **kwargs):
    """A token request as a careful API client makes it: solving the proof of work whenever asked for one."""
    response = token_request(email, password, **kwargs)
    if response.status_code == 403 and response.json()["code"] == "challenge_required":
        response = token_request(email, password, HTTP_X_ALTCHA=solved_header(), **kwargs)
    return response


def login_post(client: Client, email: str, password: str, *, ip: str = "10.20.30.40", **fields):
    return client.post("/accounts/login/", {"username": email, "password": password, **fields}, REMOTE_ADDR=ip)


def login_post_solving(client: Client, email: str, password: str, **kwargs):
    """The login form as the page sends it once the widget has solved (it is sent whether asked for or not)."""
    return login_post(client, email, password, altcha=solved_header(), **kwargs)


# --- The token API -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("known", [True, False], ids=["existing-account", "unknown-email"])
def test_the_11th_wrong_password_in_a_minute_gets_429_with_retry_after_and_then_even_the_right_one_does(
    settings, known
):
    if known:
        make_user(email="budi@example.com", password=PASSWORD)
    for attempt in range(10):
        # Any capitalisation counts for the same account.
        email = "Budi@Example.com" if attempt % 2 else "budi@example.com"
        response = token_request_solving(email, "tebakan-salah")
        assert (response.status_code, response.json()["code"]) == (401, "not_authenticated"), attempt
    locked = token_request_solving("budi@example.com", "tebakan-salah")
    assert (locked.status_code, locked.json()["code"]) == (429, "locked_out")
    assert 0 < int(locked["Retry-After"]) <= settings.WAR_LOGIN_LOCKOUT_SECONDS
    right = token_request_solving("budi@example.com", PASSWORD)
    assert (right.status_code, right.json()["code"]) == (429, "locked_out")
    assert int(right["Retry-After"]) > 0
    assert not ApiToken.objects.exists()
    # The lockout is the account's, not the address's: the same account from elsewhere is refused too, and
    # another account from this address is not.
    elsewhere = token_request_solving("budi@example.com", PASSWORD, ip="10.99.99.99")
    assert elsewhere.status_code == 429
    make_user(email="other@example.com", password=PASSWORD)
    assert token_request_solving("other@example.com", PASSWORD).status_code == 201


def test_ten_wrong_passwords_are_allowed_and_the_right_one_then_still_works():
    """Negative control for the limit: 10 failures are not yet a lockout."""
    make_user(email="budi@example.com", password=PASSWORD)
    for _ in range(9):
        assert token_request_solving("budi@example.com", "salah").status_code == 401
    assert token_request_solving("budi@example.com", PASSWORD).status_code == 201


def test_an_unknown_email_and_a_wrong_password_get_the_same_answer_and_both_run_the_hasher(settings):
    settings.PASSWORD_HASHERS = ["accounts.tests.test_throttle.CountingHasher"]
    make_user(email="budi@example.com", password=PASSWORD)
    CountingHasher.calls = 0
    wrong = token_request("budi@example.com", "salah")
    after_wrong = CountingHasher.calls
    unknown = token_request("nobody@example.com", "salah", ip="10.20.30.41")
    assert (wrong.status_code, wrong.json()) == (unknown.status_code, unknown.json())
    assert wrong.json()["code"] == "not_authenticated"
    # The same work for both: Django's ModelBackend hashes the password for an unknown email too, and axes
    # (first backend) does not short-cut it. Equal work, so no timing tells which emails exist.
    assert after_wrong == 1 and CountingHasher.calls == 2


class CountingHasher(MD5PasswordHasher):
    """The test suite's MD5 hasher, counting how often a password is hashed."""

    calls = 0

    def encode(self, password, salt):
        type(self).calls += 1
        return super().encode(password, salt)


def test_many_buyers_behind_one_cgnat_address_with_typos_are_not_locked_out(settings):
    buyers = [make_user(password=PASSWORD) for _ in range(25)]
    for buyer in buyers:
        # Each mistypes once, then gets it right: 25 failures from one address, more than an account's limit.
        assert token_request_solving(buyer.email, "typo-" + PASSWORD, ip="36.80.1.1").status_code == 401
        assert token_request_solving(buyer.email, PASSWORD, ip="36.80.1.1").status_code == 201


def test_one_address_guessing_across_many_accounts_is_locked_out_at_the_address_limit(settings):
    """The address limit exists (and is what the CGNAT test stays under): here it is lowered to 12."""
    settings.WAR_LOGIN_FAILURES_PER_IP = 12
    victims = [make_user(password=PASSWORD) for _ in range(13)]
    for victim in victims[:12]:
        assert token_request_solving(victim.email, "guess", ip="36.80.1.2").status_code == 401
    locked = token_request_solving(victims[12].email, PASSWORD, ip="36.80.1.2")
    assert (locked.status_code, locked.json()["code"]) == (429, "locked_out")
    assert token_request_solving(victims[12].email, PASSWORD, ip="36.80.1.3").status_code == 201


def test_a_token_request_with_the_same_name_replaces_the_old_token():
    buyer = make_user(password=PASSWORD)
    first = token_request(buyer.email, PASSWORD).json()["token"]
    laptop = token_request(buyer.email, PASSWORD, name="laptop").json()["token"]
    assert APIClient(HTTP_AUTHORIZATION=f"Token {first}").get("/api/tickets").status_code == 200
    second = token_request(buyer.email, PASSWORD).json()["token"]
    assert APIClient(HTTP_AUTHORIZATION=f"Token {first}").get("/api/tickets").status_code == 401
    # The war endpoint's cached token lookup forgets it at once too.
    assert APIClient(HTTP_AUTHORIZATION=f"Token {first}").post("/api/war", {}, format="json").status_code == 401
    for live in (second, laptop):
        assert APIClient(HTTP_AUTHORIZATION=f"Token {live}").get("/api/tickets").status_code == 200
    assert sorted(ApiToken.objects.filter(user=buyer).values_list("name", flat=True)) == ["api", "laptop"]


# --- The login page ----------------------------------------------------------------------------------------


def test_the_login_page_locks_out_after_10_wrong_passwords_and_says_how_long(settings):
    make_user(email="budi@example.com", password=PASSWORD)
    client = Client()
    for _ in range(10):
        response = login_post_solving(client, "budi@example.com", "salah")
        assert response.status_code == 200
        assert "Email atau kata sandi salah" in response.content.decode() or response.context["form"].errors
    locked = login_post_solving(client, "budi@example.com", "salah")
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= settings.WAR_LOGIN_LOCKOUT_SECONDS
    assert "coba lagi dalam 5 menit" in locked.content.decode()
    right = login_post_solving(client, "Budi@Example.com", PASSWORD)
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get("/tickets/").status_code == 302  # still anonymous


def test_the_login_page_and_the_token_api_count_failures_together():
    make_user(email="budi@example.com", password=PASSWORD)
    for _ in range(5):
        assert login_post_solving(Client(), "budi@example.com", "salah").status_code == 200
    for _ in range(5):
        assert token_request_solving("budi@example.com", "salah").status_code == 401
    assert token_request_solving("budi@example.com", PASSWORD).status_code == 429


# --- Sign-ups ----------------------------------------------------------------------------------------------


def register(client: Client, serial: int, *, ip: str = "10.1.1.1", meta: dict | None = None, **extra):
    data = {
        "email": f"baru{serial}@example.com",
        "full_name": f"Pembeli Baru {serial}",
        "nik": make_nik(5000 + serial),
        "phone": "0812 3456 7890",
        "password1": "emas-antre-2026!",
        "password2": "emas-antre-2026!",
    }
    data["altcha"] = solved_header()
    return client.post("/accounts/register/", data | extra, REMOTE_ADDR=ip, **(meta or {}))


def test_sign_ups_per_address_per_day_are_limited_with_a_clear_429(settings):
    settings.WAR_REGISTRATIONS_PER_IP_PER_DAY = 2
    # A form refused for its own mistakes does not spend the address's allowance.
    assert register(Client(), 0, password2="beda").status_code == 200
    assert register(Client(), 1).status_code == 302
    assert register(Client(), 2).status_code == 302
    refused = register(Client(), 3)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 86400
    assert "Terlalu banyak akun baru dibuat dari jaringan Anda hari ini" in refused.content.decode()
    assert not User.objects.filter(email="baru3@example.com").exists()
    # Another address is not affected.
    assert register(Client(), 4, ip="10.1.1.2").status_code == 302


def test_the_registering_address_is_recorded_from_the_trusted_proxy_header(settings):
    assert register(Client(), 1, ip="10.1.1.1").status_code == 302
    assert User.objects.get(email="baru1@example.com").registered_ip == "10.1.1.1"
    settings.WAR_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    assert register(Client(), 2, ip="172.16.0.1", meta={"HTTP_X_REAL_IP": "114.4.5.6"}).status_code == 302
    assert User.objects.get(email="baru2@example.com").registered_ip == "114.4.5.6"


def test_a_taken_nik_is_refused_without_saying_whose_it_is():
    owner = make_user(email="pemilik.rahasia@example.com", full_name="Pemilik Rahasia", nik=make_nik(5001))
    response = register(Client(), 1)
    assert response.status_code == 200
    page = response.content.decode()
    assert "NIK ini sudah terdaftar pada akun lain." in page
    assert owner.email not in page and owner.full_name not in page
