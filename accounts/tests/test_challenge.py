"""Proof of work (ALTCHA): what the server accepts, once, and where it is required."""

from __future__ import annotations

import base64
import json

import altcha
import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import challenge, throttle
from accounts.validators import make_nik
from queueing.services.errors import ReservationError
from tests.factory import make_user
from tests.pow import solve, solved_header

pytestmark = pytest.mark.django_db

PASSWORD = "antre-dulu-2026"


def code_of(payload) -> str | None:
    try:
        challenge.verify(payload)
    except ReservationError as exc:
        return exc.code
    return None


def test_a_correct_solution_is_accepted_once():
    payload = solved_header()
    assert code_of(payload) is None
    assert code_of(payload) == "challenge_invalid"  # replayed


def test_missing_wrong_tampered_and_garbage_solutions_are_refused_with_stable_codes():
    assert code_of(None) == "challenge_required"
    assert code_of("") == "challenge_required"
    assert code_of("not base64 at all!") == "challenge_invalid"
    assert code_of(base64.b64encode(b'{"challenge": 1}').decode()) == "challenge_invalid"
    assert code_of("A" * 5000) == "challenge_invalid"
    good = json.loads(base64.b64decode(solved_header()))
    # A derived key not found by solving (the challenge shows only its first half).
    wrong = json.loads(json.dumps(good))
    wrong["solution"]["derivedKey"] = wrong["solution"]["derivedKey"][:32] + "0" * 32
    assert code_of(base64.b64encode(json.dumps(wrong).encode()).decode()) == "challenge_invalid"
    # Made easier by the client (a shorter key prefix): the signature no longer matches.
    tampered = json.loads(json.dumps(good))
    tampered["challenge"]["parameters"]["keyPrefix"] = tampered["challenge"]["parameters"]["keyPrefix"][:2]
    assert code_of(base64.b64encode(json.dumps(tampered).encode()).decode()) == "challenge_invalid"
    # Signed with another key (someone else's server, or a self-made challenge).
    foreign = altcha.create_challenge(algorithm="PBKDF2/SHA-256", cost=1, counter=3, hmac_secret="not ours")
    assert code_of(solve(foreign.to_dict())) == "challenge_invalid"
    # Negative control: the untouched solution still passes.
    assert code_of(base64.b64encode(json.dumps(good).encode()).decode()) is None


def test_an_expired_challenge_is_refused(settings):
    settings.WAR_POW_EXPIRES_SECONDS = -1  # issued already expired
    assert code_of(solved_header()) == "challenge_invalid"


def test_with_proof_of_work_off_nothing_is_asked(settings):
    settings.WAR_POW_ENABLED = False
    assert code_of(None) is None


def test_the_challenge_endpoint_is_json_and_never_cached():
    response = APIClient().get("/api/challenge")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["signature"] and body["parameters"]["algorithm"] == "PBKDF2/SHA-256"
    assert body["parameters"]["expiresAt"] > 0


# --- The token API: only after failures --------------------------------------------------------------------


def token_request(email, password, **headers):
    return APIClient().post("/api/auth/token", {"email": email, "password": password}, format="json", **headers)


def test_the_first_token_request_is_a_plain_request_and_after_3_failures_a_proof_is_needed():
    make_user(email="budi@example.com", password=PASSWORD)
    assert token_request("budi@example.com", PASSWORD).status_code == 201
    for _ in range(3):
        assert token_request("budi@example.com", "salah").status_code == 401
    required = token_request("budi@example.com", PASSWORD)
    assert (required.status_code, required.json()["code"]) == (403, "challenge_required")
    garbage = token_request("budi@example.com", PASSWORD, HTTP_X_ALTCHA="eyJ4IjoxfQ==")
    assert (garbage.status_code, garbage.json()["code"]) == (403, "challenge_invalid")
    payload = solved_header()
    accepted = token_request("budi@example.com", PASSWORD, HTTP_X_ALTCHA=payload)
    assert accepted.status_code == 201
    replayed = token_request("budi@example.com", PASSWORD, HTTP_X_ALTCHA=payload)
    assert (replayed.status_code, replayed.json()["code"]) == (403, "challenge_invalid")
    # Refusals for the proof wrote nothing: one token per name, and no failure was counted for them.
    assert ApiToken.objects.count() == 1
    assert throttle.login_failures(APIClient().get("/").wsgi_request, "budi@example.com") == (3, 3)


# --- The pages ---------------------------------------------------------------------------------------------


def register_data(serial: int, **extra) -> dict:
    return {
        "email": f"pow{serial}@example.com",
        "full_name": f"Pembeli Pow {serial}",
        "nik": make_nik(7000 + serial),
        "phone": "0812 3456 7890",
        "password1": "emas-antre-2026!",
        "password2": "emas-antre-2026!",
    } | extra


def test_registration_without_a_proof_is_refused_and_the_form_says_why():
    page = Client().get("/accounts/register/")
    assert "<altcha-widget" in page.content.decode() and "/api/challenge" in page.content.decode()
    refused = Client().post("/accounts/register/", register_data(1))
    assert refused.status_code == 403
    assert "Pemeriksaan anti-bot belum selesai" in refused.content.decode()
    assert "<altcha-widget" in refused.content.decode()
    wrong = Client().post("/accounts/register/", register_data(1, altcha="eyJ4IjoxfQ=="))
    assert wrong.status_code == 403 and "Pemeriksaan anti-bot gagal" in wrong.content.decode()
    assert not User.objects.exists()
    assert Client().post("/accounts/register/", register_data(1, altcha=solved_header())).status_code == 302
    assert User.objects.filter(email="pow1@example.com").exists()


def test_the_login_page_asks_for_a_proof_only_after_failures():
    make_user(email="budi@example.com", password=PASSWORD)
    client = Client()
    assert "<altcha-widget" not in client.get("/accounts/login/").content.decode()
    for _attempt in range(3):
        response = client.post("/accounts/login/", {"username": "budi@example.com", "password": "salah"})
        assert response.status_code == 200
    # The page that answered the third failure already carries the widget for the next try.
    assert "<altcha-widget" in response.content.decode()
    refused = client.post("/accounts/login/", {"username": "budi@example.com", "password": PASSWORD})
    assert refused.status_code == 200 and "Pemeriksaan anti-bot belum selesai" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    ok = client.post(
        "/accounts/login/", {"username": "budi@example.com", "password": PASSWORD, "altcha": solved_header()}
    )
    assert ok.status_code == 302 and "_auth_user_id" in client.session
