from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError
from rest_framework.test import APIClient

from accounts.models import ApiToken, User, hash_secret
from accounts.validators import make_nik, nik_birth_date, validate_nik


@pytest.mark.parametrize(
    "nik",
    [
        "3174011705900001",  # man born 17-05-1990
        "3174015705900002",  # woman born 17-05-1990: day + 40
        "3273012902000003",  # 29-02-2000 exists
        "1101017112990004",  # woman born 31-12-1999
    ],
)
def test_valid_niks_pass(nik):
    validate_nik(nik)


@pytest.mark.parametrize(
    ("nik", "code"),
    [
        ("317401170590001", "nik_length"),
        ("31740117059000011", "nik_length"),
        ("31740117059O0001", "nik_digits"),
        ("".join(chr(ord(c) + 0xFEE0) for c in "3174011705900001"), "nik_digits"),  # full-width: isdigit() says yes
        ("0074011705900001", "nik_region"),
        ("3174013205900001", "nik_birth_date"),  # day 32
        ("3174017305900001", "nik_birth_date"),  # woman's day 33
        ("3174013102900001", "nik_birth_date"),  # 31 February
        ("3174012902010001", "nik_birth_date"),  # 29-02 in neither 1901 nor 2001
        ("3174011713900001", "nik_birth_date"),  # month 13
        ("3174011705900000", "nik_serial"),
    ],
)
def test_invalid_niks_are_refused_with_a_code(nik, code):
    with pytest.raises(ValidationError) as error:
        validate_nik(nik)
    assert error.value.code == code


def test_the_birth_date_and_sex_are_read_from_digits_7_to_12():
    assert nik_birth_date("3174015705900002") == (datetime.date(1990, 5, 17), True)
    assert nik_birth_date(make_nik(9, birth=datetime.date(2001, 8, 3))) == (datetime.date(2001, 8, 3), False)


@pytest.mark.django_db
def test_nik_and_email_are_unique():
    User.objects.create_user("a@example.com", "x", full_name="A", nik="3174011705900001")
    with pytest.raises(IntegrityError):
        User.objects.create_user("b@example.com", "x", full_name="B", nik="3174011705900001")


@pytest.mark.django_db
def test_email_is_unique_regardless_of_case():
    User.objects.create_user("Siti@Example.com", "x", full_name="Siti")
    assert User.objects.get().email == "siti@example.com"
    with pytest.raises(IntegrityError):
        User.objects.create_user("SITI@example.com", "x", full_name="Siti 2")


@pytest.mark.django_db
def test_a_token_is_issued_for_email_and_password_and_stored_hashed():
    User.objects.create_user("buyer@example.com", "antre-dulu-2026", full_name="Buyer")
    response = APIClient().post(
        "/api/auth/token", {"email": "buyer@example.com", "password": "antre-dulu-2026"}, format="json"
    )
    assert response.status_code == 201
    raw = response.json()["token"]
    stored = ApiToken.objects.get()
    assert stored.key_hash == hash_secret(raw)
    assert raw not in (stored.key_hash, stored.prefix)
    mine = APIClient(HTTP_AUTHORIZATION=f"Token {raw}").get("/api/tickets")
    assert (mine.status_code, mine.json()) == (200, [])


@pytest.mark.django_db
def test_a_wrong_password_gets_no_token():
    User.objects.create_user("buyer@example.com", "antre-dulu-2026", full_name="Buyer")
    response = APIClient().post("/api/auth/token", {"email": "buyer@example.com", "password": "nope"}, format="json")
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")
    assert not ApiToken.objects.exists()
