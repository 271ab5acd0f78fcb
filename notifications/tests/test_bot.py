"""Each bot command's reply, through the webhook view and the fake Bot API (real HTTP both ways)."""

from __future__ import annotations

import pytest
from django.test import Client

from notifications.models import ReminderSubscription
from notifications.tests.conftest import SECRET, link, new_chat_id, post_update, say
from queueing.models import Location, Ticket
from tests.factory import make_slot, make_user, token_client, war_body

pytestmark = pytest.mark.django_db


def test_start_welcomes_and_explains_how_to_link(telegram_on, settings):
    settings.TELEGRAM_SITE_URL = "https://wartiket.example"
    [reply] = say(telegram_on, new_chat_id(), "/start")
    assert "Selamat datang di War Tiket Bot" in reply
    assert "https://wartiket.example" in reply
    assert "Hubungkan Telegram" in reply
    assert "/status" in reply


def test_start_greets_a_linked_user_by_name(telegram_on):
    chat = link(make_user(full_name="Sari Dewi"))
    [reply] = say(telegram_on, chat.chat_id, "/start")
    assert "Halo Sari" in reply
    assert "sudah terhubung" in reply


def test_status_reports_the_backend_online_and_the_next_wars_with_live_remaining(telegram_on):
    open_now = make_slot(quota_size=10, opens_in=-60, label="10:00")
    later = make_slot(quota_size=5, opens_in=3600, label="13:00")
    token_client(make_user()).post("/api/war", war_body(open_now), format="json")
    chat_id = new_chat_id()

    [reply] = say(telegram_on, chat_id, "/status")
    assert reply.startswith("✅ Backend ONLINE. Kuota tersedia.")
    assert "Waktu server" in reply
    assert f"#{open_now.pk}" in reply and "sisa 9/10" in reply and "Sedang dibuka" in reply
    assert f"#{later.pk}" in reply and "sisa 5/5" in reply
    # A reminder button for the war that has not opened yet, none for the open one.
    markup = telegram_on.sent(chat_id)[-1].params["reply_markup"]
    callbacks = [row[0]["callback_data"] for row in markup["inline_keyboard"]]
    assert callbacks == [f"remind:{later.pk}"]


def test_status_answers_in_english_for_english_speaking_users(telegram_on):
    make_slot(quota_size=3)
    [reply] = say(telegram_on, new_chat_id(), "/status", language_code="en")
    assert "ONLINE" in reply and "Quota available" in reply
    assert "Kuota" not in reply


def test_status_with_no_wars_says_so(telegram_on):
    [reply] = say(telegram_on, new_chat_id(), "/status")
    assert reply.startswith("✅ Backend ONLINE.")
    assert "Belum ada war terjadwal" in reply


def test_status_and_remind_leave_out_wars_at_a_deactivated_boutique(telegram_on):
    kept = make_slot(quota_size=5, opens_in=3600, label="13:00")
    gone = make_slot(quota_size=5, opens_in=3600, label="15:00", location="tutup")
    chat_id = new_chat_id()
    [before] = say(telegram_on, chat_id, "/status")
    assert f"#{gone.pk}" in before  # negative control: listed while the boutique is active

    Location.objects.filter(pk=gone.location_id).update(active=False)
    [reply] = say(telegram_on, chat_id, "/status")
    assert f"#{kept.pk}" in reply and f"#{gone.pk}" not in reply
    markup = telegram_on.sent(chat_id)[-1].params["reply_markup"]
    assert [row[0]["callback_data"] for row in markup["inline_keyboard"]] == [f"remind:{kept.pk}"]
    chat = link(make_user())
    assert "tidak ada" in say(telegram_on, chat.chat_id, f"/remind {gone.pk}")[0]


def test_tickets_lists_the_linked_users_active_tickets_with_queue_numbers(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    slot = make_slot(quota_size=10)
    token_client(make_user()).post("/api/war", war_body(slot), format="json")
    body = token_client(buyer).post("/api/war", war_body(slot), format="json").json()
    ticket = Ticket.objects.get(code=body["ticket"]["code"])

    [reply] = say(telegram_on, chat.chat_id, "/tickets")
    assert "Tiket aktif kamu" in reply
    assert f"#{ticket.queue_number}" in reply and ticket.queue_number == 2
    assert ticket.code in reply
    assert slot.location.name in reply


def test_tickets_without_tickets_or_without_a_link(telegram_on):
    chat = link(make_user())
    assert "belum punya tiket aktif" in say(telegram_on, chat.chat_id, "/tickets")[0]
    assert "belum terhubung" in say(telegram_on, new_chat_id(), "/tickets")[0]


def test_remind_opts_in_to_a_reminder_before_a_war_opens(telegram_on, settings):
    settings.TELEGRAM_REMINDER_MINUTES = 15
    buyer = make_user()
    chat = link(buyer)
    slot = make_slot(opens_in=7200)

    [reply] = say(telegram_on, chat.chat_id, f"/remind {slot.pk}")
    assert "15 menit sebelum war dibuka" in reply
    assert ReminderSubscription.objects.filter(user=buyer, slot=slot).count() == 1
    [again] = say(telegram_on, chat.chat_id, f"/remind {slot.pk}")
    assert "sudah aktif" in again
    assert ReminderSubscription.objects.count() == 1


def test_the_remind_button_opts_in_too(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    slot = make_slot(opens_in=7200)
    response = post_update(telegram_on.callback_update(chat.chat_id, f"remind:{slot.pk}"))
    assert response.status_code == 200
    assert ReminderSubscription.objects.filter(user=buyer, slot=slot).exists()
    assert len(telegram_on.calls("answerCallbackQuery")) == 1
    assert "menit sebelum war dibuka" in telegram_on.sent(chat.chat_id)[-1].text


def test_remind_refuses_bad_input_with_clear_replies(telegram_on):
    chat = link(make_user())
    open_slot = make_slot(opens_in=-60)
    assert "Tulis nomor slot" in say(telegram_on, chat.chat_id, "/remind")[0]
    assert "Tulis nomor slot" in say(telegram_on, chat.chat_id, "/remind besok")[0]
    assert "tidak ada" in say(telegram_on, chat.chat_id, "/remind 999999")[0]
    assert "sudah dibuka" in say(telegram_on, chat.chat_id, f"/remind {open_slot.pk}")[0]
    assert "belum terhubung" in say(telegram_on, new_chat_id(), f"/remind {open_slot.pk}")[0]
    assert not ReminderSubscription.objects.exists()


def test_help_and_anything_else_get_the_help_text(telegram_on):
    chat_id = new_chat_id()
    [help_reply] = say(telegram_on, chat_id, "/help")
    [other] = say(telegram_on, chat_id, "halo, tiketnya masih ada?")
    [unknown] = say(telegram_on, chat_id, "/beli")
    assert "/status" in help_reply and "/tickets" in help_reply and "/remind" in help_reply
    assert other == help_reply == unknown


def test_the_webhook_refuses_a_missing_or_wrong_secret(telegram_on):
    chat_id = new_chat_id()
    for secret in (None, "wrong", SECRET + "x"):
        response = post_update(telegram_on.message_update(chat_id, "/status"), secret=secret)
        assert response.status_code == 403
        assert response.json()["code"] == "bad_secret"
    assert telegram_on.calls("sendMessage") == []


def test_the_webhook_refuses_everything_when_no_secret_is_configured(telegram_on, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = ""
    response = post_update(telegram_on.message_update(new_chat_id(), "/status"), secret="")
    assert response.status_code == 403


def test_the_webhook_handles_a_repeated_update_once(telegram_on):
    chat_id = new_chat_id()
    update = telegram_on.message_update(chat_id, "/help")
    assert post_update(update).status_code == 200
    assert post_update(update).status_code == 200
    assert len(telegram_on.sent(chat_id)) == 1


def test_the_webhook_rejects_a_body_that_is_not_an_update(telegram_on):
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": SECRET}
    client = Client()
    not_json = client.post("/telegram/webhook/", "{", content_type="application/json", **headers)
    not_update = client.post("/telegram/webhook/", {"hello": 1}, content_type="application/json", **headers)
    assert (not_json.status_code, not_json.json()["code"]) == (400, "bad_update")
    assert (not_update.status_code, not_update.json()["code"]) == (400, "bad_update")
    assert client.get("/telegram/webhook/", **headers).status_code == 405


def test_the_webhook_is_off_without_a_bot_token(telegram_on, settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    response = post_update(telegram_on.message_update(new_chat_id(), "/status"))
    assert (response.status_code, response.json()["code"]) == (503, "telegram_disabled")


def test_the_bot_ignores_group_chats(telegram_on):
    update = telegram_on.message_update(new_chat_id(), "/status")
    update["message"]["chat"] = {"id": -100123, "type": "supergroup", "title": "Grup war"}
    assert post_update(update).status_code == 200
    assert telegram_on.calls("sendMessage") == []
