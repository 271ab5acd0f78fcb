"""Linking an account: the profile's Connect button, the deep link, /start <token>, /stop and Disconnect."""

from __future__ import annotations

import datetime
import re

import pytest
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.utils import timezone

from accounts.models import hash_secret
from notifications.models import LinkToken, Notification, TelegramLink
from notifications.services import delivery, linking
from notifications.tests.conftest import link, new_chat_id, say
from tests.factory import make_user

pytestmark = pytest.mark.django_db

DEEP_LINK = re.compile(r"https://t\.me/WarTiketBot\?start=([A-Za-z0-9_-]{20,64})")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def connect(client: Client) -> str:
    """Press "Connect Telegram"; return the token from the deep link the page shows."""
    response = client.post("/telegram/connect/", {"next": "/accounts/profile/"})
    assert response.status_code == 200
    match = DEEP_LINK.search(response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


def test_connect_shows_a_one_time_deep_link_whose_token_is_stored_only_hashed(telegram_on):
    buyer = make_user()
    token = connect(logged_in(buyer))
    stored = LinkToken.objects.get(user=buyer)
    assert stored.token_hash == hash_secret(token)
    assert token not in stored.token_hash
    assert stored.used_at is None
    assert stored.expires_at > timezone.now() + datetime.timedelta(minutes=14)


def test_connect_needs_a_logged_in_post(telegram_on):
    assert Client().post("/telegram/connect/").status_code == 302  # to the login page
    assert logged_in(make_user()).get("/telegram/connect/").status_code == 405


def test_a_new_link_token_replaces_the_unused_one(telegram_on):
    client = logged_in(make_user())
    first = connect(client)
    second = connect(client)
    assert say(telegram_on, new_chat_id(), f"/start {first}")[0].startswith("Tautan ini tidak dikenal")
    assert LinkToken.objects.get().token_hash == hash_secret(second)


def test_start_with_the_token_links_the_chat_and_says_so_once(telegram_on, django_capture_on_commit_callbacks):
    buyer = make_user(full_name="Sari Dewi")
    token = connect(logged_in(buyer))
    chat_id = new_chat_id()

    with django_capture_on_commit_callbacks() as queued:
        replies = say(telegram_on, chat_id, f"/start {token}", language_code="id", username="sari")
    assert replies == []  # the "you're linked" message goes out through Celery, exactly once
    assert len(queued) == 1

    link = TelegramLink.objects.get(user=buyer)
    assert (link.chat_id, link.username, link.language_code, link.active) == (chat_id, "sari", "id", True)
    notification = Notification.objects.get(user=buyer, kind=Notification.Kind.LINKED)
    assert delivery.deliver(notification.pk).outcome == "sent"
    [message] = telegram_on.sent(chat_id)
    assert "Akun terhubung" in message.text
    assert buyer.email in message.text


def test_a_used_token_gets_a_clear_reply_and_links_nothing_else(telegram_on):
    buyer = make_user()
    token = connect(logged_in(buyer))
    first_chat, second_chat = new_chat_id(), new_chat_id()
    say(telegram_on, first_chat, f"/start {token}")
    assert say(telegram_on, second_chat, f"/start {token}") == [
        "Tautan ini sudah dipakai. Buat tautan baru dari profil di situs War Tiket."
    ]
    assert TelegramLink.objects.get(user=buyer).chat_id == first_chat


def test_an_expired_token_gets_a_clear_reply_in_the_users_language(telegram_on):
    buyer = make_user()
    token = connect(logged_in(buyer))
    LinkToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    [reply] = say(telegram_on, new_chat_id(), f"/start {token}", language_code="en-GB")
    assert "expired" in reply
    assert not TelegramLink.objects.exists()


def test_stop_unlinks_the_chat(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    [reply] = say(telegram_on, chat.chat_id, "/stop")
    assert "sudah diputus" in reply
    assert not TelegramLink.objects.filter(user=buyer).exists()


def test_disconnect_on_the_profile_unlinks(telegram_on):
    buyer = make_user()
    link(buyer)
    response = logged_in(buyer).post("/telegram/disconnect/", {"next": "/accounts/profile/"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/profile/"
    assert not TelegramLink.objects.filter(user=buyer).exists()


def test_disconnect_never_redirects_off_site(telegram_on):
    response = logged_in(make_user()).post("/telegram/disconnect/", {"next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_linking_a_chat_to_another_account_moves_it(telegram_on):
    first, second = make_user(), make_user()
    chat = link(first)
    token = connect(logged_in(second))
    say(telegram_on, chat.chat_id, f"/start {token}")
    assert TelegramLink.objects.get(chat_id=chat.chat_id).user == second
    assert not TelegramLink.objects.filter(user=first).exists()


def render_card(user) -> str:
    request = RequestFactory().get("/accounts/profile/")
    request.user = user
    return render_to_string("notifications/telegram_connect.html", {"user": user, "request": request})


def test_the_profile_card_offers_connect_then_disconnect(telegram_on):
    buyer = make_user()
    card = render_card(buyer)
    assert 'action="/telegram/connect/"' in card
    assert "Hubungkan Telegram" in card
    assert "Putuskan" not in card

    link(buyer)
    card = render_card(buyer)
    assert 'action="/telegram/disconnect/"' in card
    assert "Terhubung" in card
    assert 'action="/telegram/connect/"' not in card


def test_the_profile_card_explains_a_blocked_bot(telegram_on):
    buyer = make_user()
    link(buyer)
    TelegramLink.objects.update(active=False)
    card = render_card(buyer)
    assert 'data-testid="telegram-inactive"' in card
    assert 'action="/telegram/connect/"' in card


def test_the_profile_card_says_telegram_is_off_without_a_token(settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    card = render_card(make_user())
    assert 'data-testid="telegram-disabled"' in card
    assert "/telegram/connect/" not in card


def test_writing_to_the_bot_again_reactivates_a_blocked_link(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    linking.deactivate(chat.chat_id, "Forbidden: bot was blocked by the user")
    say(telegram_on, chat.chat_id, "/start")
    chat.refresh_from_db()
    assert chat.active
