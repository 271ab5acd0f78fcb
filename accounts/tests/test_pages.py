"""Register, login, logout and profile pages, on real PostgreSQL and Redis."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client

from accounts.models import User
from accounts.validators import make_nik
from tests.factory import make_slot, make_user
from tests.pow import solved_header

pytestmark = pytest.mark.django_db

GOOD_NIK = make_nik(4321, birth=datetime.date(1994, 8, 17), female=True)


def register(client: Client, **overrides):
    data = {
        "email": "Ani.Lestari@Example.com",
        "full_name": "Ani Lestari",
        "nik": GOOD_NIK,
        "phone": "0812 3456 7890",
        "password1": "emas-antre-2026!",
        "password2": "emas-antre-2026!",
    }
    data["altcha"] = solved_header()  # what the page's widget sends once it has solved the proof of work
    data.update(overrides)
    return client.post("/accounts/register/" + data.pop("query", ""), data)


def errors(response, field: str) -> list[str]:
    return [str(e) for e in response.context["form"].errors.get(field, [])]


def test_registering_creates_the_buyer_logs_them_in_and_returns_them_where_they_were():
    slot = make_slot()
    client = Client()
    response = register(client, query=f"?next=/war/{slot.pk}/", nik=GOOD_NIK[:6] + " " + GOOD_NIK[6:])
    assert response.status_code == 302 and response["Location"] == f"/war/{slot.pk}/"
    user = User.objects.get()
    assert (user.email, user.full_name, user.nik, user.phone) == (
        "ani.lestari@example.com",
        "Ani Lestari",
        GOOD_NIK,
        "081234567890",
    )
    assert user.check_password("emas-antre-2026!")
    assert 'id="take"' in client.get(f"/war/{slot.pk}/").content.decode()


@pytest.mark.parametrize(
    ("nik", "words"),
    [
        ("31740157940", "tepat 16 digit (Anda mengetik 11)"),
        ("3174015794OO0001", "hanya berisi angka"),
        ("0174015708940001", "kode provinsi"),
        ("3174019913940001", "tanggal lahir"),
        ("3174015708940000", "tidak boleh 0000"),
    ],
)
def test_a_wrong_nik_gets_a_message_that_says_what_to_fix(nik, words):
    response = register(Client(), nik=nik)
    assert response.status_code == 200
    assert any(words in message for message in errors(response, "nik")), errors(response, "nik")
    assert not User.objects.exists()


def test_a_nik_or_email_already_registered_is_refused_clearly():
    make_user(email="ani.lestari@example.com", nik=make_nik(1))
    make_user(nik=GOOD_NIK)
    response = register(Client())
    assert errors(response, "email") == ["Email ini sudah terdaftar. Silakan masuk."]
    assert errors(response, "nik") == ["NIK ini sudah terdaftar pada akun lain."]


@pytest.mark.parametrize("phone", ["+62 812-3456-7890", "6281234567890", "(0812) 3456.7890"])
def test_indonesian_mobile_numbers_are_accepted_in_the_usual_spellings(phone):
    assert register(Client(), phone=phone).status_code == 302
    assert User.objects.get().phone == "081234567890"


@pytest.mark.parametrize("phone", ["021 555 1234", "0812", "+1 415 555 0100", "08123456789012345", "telepon"])
def test_other_phone_numbers_are_refused(phone):
    response = register(Client(), phone=phone)
    assert "nomor HP Indonesia" in errors(response, "phone")[0]


def test_passwords_must_match_and_be_strong():
    mismatch = register(Client(), password2="something-else-99")
    assert errors(mismatch, "password2") == ["Kedua kata sandi tidak sama."]
    weak = register(Client(), password1="12345678", password2="12345678")
    assert errors(weak, "password1")
    assert not User.objects.exists()


def test_login_is_by_email_in_any_capitalisation():
    make_user(email="budi@example.com", password="rahasia-budi-2026")
    client = Client()
    wrong = client.post("/accounts/login/", {"username": "budi@example.com", "password": "nope"})
    assert wrong.status_code == 200 and wrong.context["form"].non_field_errors()
    response = client.post(
        "/accounts/login/?next=/tickets/", {"username": "Budi@Example.COM", "password": "rahasia-budi-2026"}
    )
    assert response.status_code == 302 and response["Location"] == "/tickets/"
    assert client.get("/tickets/").status_code == 200


def test_logout_is_a_post():
    client = Client()
    client.force_login(make_user())
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/tickets/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/tickets/").status_code == 302


def test_the_profile_edits_name_phone_and_nik_and_the_war_sees_the_new_nik_at_once():
    slot = make_slot()
    user = make_user(nik=None, phone="")
    client = Client()
    client.force_login(user)
    refused = client.post("/api/war", {"location_id": "graha-dipta", "time_slot": "10:00"}, "application/json")
    assert refused.json()["code"] == "nik_required"  # also caches "no NIK" in Redis
    response = client.post(
        f"/accounts/profile/?next=/war/{slot.pk}/",
        {"full_name": "Ani Baru", "phone": "+6285712345678", "nik": GOOD_NIK},
    )
    assert response.status_code == 302 and response["Location"] == f"/war/{slot.pk}/"
    user.refresh_from_db()
    assert (user.full_name, user.phone, user.nik) == ("Ani Baru", "085712345678", GOOD_NIK)
    taken = client.post("/api/war", {"location_id": "graha-dipta", "time_slot": "10:00"}, "application/json")
    assert taken.status_code == 201, taken.json()


def test_the_profile_refuses_a_nik_that_belongs_to_someone_else_but_keeps_ones_own():
    make_user(nik=GOOD_NIK)
    user = make_user()
    client = Client()
    client.force_login(user)
    taken = client.post("/accounts/profile/", {"full_name": "X", "phone": "081234567890", "nik": GOOD_NIK})
    assert errors(taken, "nik") == ["NIK ini sudah terdaftar pada akun lain."]
    own = client.post("/accounts/profile/", {"full_name": "X", "phone": "081234567890", "nik": user.nik})
    assert own.status_code == 302


def test_the_profile_shows_the_telegram_connect_box(settings):
    settings.TELEGRAM_BOT_TOKEN = "123:abc"
    user = make_user()
    client = Client()
    client.force_login(user)
    html = client.get("/accounts/profile/").content.decode()
    assert 'id="telegram"' in html and 'data-testid="telegram-connect"' in html
    assert 'action="/telegram/connect/"' in html
    assert Client().get("/accounts/profile/").status_code == 302
