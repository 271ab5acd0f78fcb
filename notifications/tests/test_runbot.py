"""The bot as a new user meets it: `manage.py runbot` (long polling) + a Celery worker + the fake Bot API.

Also the webhook management command, and what happens without a token.
"""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command

from notifications.models import TelegramLink
from notifications.tests.conftest import SECRET, celery_worker, new_chat_id, stop_process
from notifications.tests.test_linking import connect, logged_in
from tests.factory import make_slot, make_user, token_client, war_body
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.live import free_port, logged_process, poll


@contextmanager
def runbot(fake, log_dir):
    argv = [sys.executable, "manage.py", "runbot", "--polling-timeout", "1"]
    with logged_process(argv, log_dir / "runbot.log", TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url) as proc:
        yield proc


def replies(fake, chat_id: int, count: int) -> list[str]:
    return [call.text for call in fake.wait_for(lambda: len(fake.sent(chat_id)) >= count and fake.sent(chat_id))]


@pytest.mark.django_db(transaction=True)
def test_a_new_user_links_asks_status_and_tickets_and_gets_the_reserved_ticket_message(telegram_on, tmp_path):
    buyer = make_user(full_name="Sari Dewi")
    slot = make_slot(quota_size=10)
    token = connect(logged_in(buyer))  # the profile's "Connect Telegram" button
    chat_id = new_chat_id()

    with celery_worker(telegram_on, tmp_path), runbot(telegram_on, tmp_path) as bot:
        telegram_on.wait_for(lambda: telegram_on.calls("getUpdates"), timeout=60)
        assert telegram_on.calls("setMyCommands")

        telegram_on.push_message(chat_id, f"/start {token}", username="saridewi")
        assert "Akun terhubung" in replies(telegram_on, chat_id, 1)[0]  # sent by the worker
        assert TelegramLink.objects.get(user=buyer).chat_id == chat_id

        telegram_on.push_message(chat_id, "/status")
        assert replies(telegram_on, chat_id, 2)[1].startswith("✅ Backend ONLINE. Kuota tersedia.")

        body = token_client(buyer).post("/api/war", war_body(slot), format="json").json()
        code = body["ticket"]["code"]
        assert code in replies(telegram_on, chat_id, 3)[2]  # the reserved-ticket message, from the worker

        telegram_on.push_message(chat_id, "/tickets")
        assert code in replies(telegram_on, chat_id, 4)[3]

        assert stop_process(bot, signal.SIGTERM) == 0
    assert "Bot stopped after handling 3 update(s)." in bot.log_path.read_text()
    assert len(telegram_on.sent(chat_id)) == 4


@pytest.mark.django_db(transaction=True)
def test_runbot_waits_for_an_unreachable_bot_api_and_serves_once_it_answers(tmp_path):
    # `make run` with a token and no network (or Telegram down): the bot used to exit at once.
    fake = FakeTelegram(port=free_port())  # its port is closed until start()
    with runbot(fake, tmp_path) as bot:
        log = bot.log_path
        poll(lambda: "can't reach the Bot API" in log.read_text(), timeout=60, message="the unreachable line")
        time.sleep(4)  # a few attempts: still running, still one line
        assert bot.poll() is None, log.read_text()
        assert log.read_text().count("can't reach the Bot API") == 1

        with fake:
            fake.wait_for(lambda: fake.calls("getUpdates"), timeout=30)  # backoff is capped at 5 s
            assert fake.calls("setMyCommands")
            chat_id = new_chat_id()
            fake.push_message(chat_id, "/help")
            assert replies(fake, chat_id, 1)
            assert stop_process(bot, signal.SIGTERM) == 0
    assert "reached the Bot API after" in log.read_text()


def test_runbot_stops_cleanly_on_sigterm_while_waiting_for_the_bot_api(tmp_path):
    fake = FakeTelegram(port=free_port())  # never started
    with runbot(fake, tmp_path) as bot:
        poll(lambda: "can't reach the Bot API" in bot.log_path.read_text(), timeout=60, message="the unreachable line")
        assert stop_process(bot, signal.SIGTERM) == 0
    assert "Bot stopped after handling 0 update(s)." in bot.log_path.read_text()


@pytest.mark.django_db
def test_runbot_needs_a_token(settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    with pytest.raises(CommandError, match="TELEGRAM_BOT_TOKEN"):
        call_command("runbot")


@pytest.mark.django_db
def test_telegram_webhook_sets_shows_and_deletes_the_webhook_with_our_secret(telegram_on, capsys):
    call_command("telegram_webhook", "set", "https://wartiket.example/telegram/webhook/")
    assert telegram_on.webhook == {"url": "https://wartiket.example/telegram/webhook/", "secret_token": SECRET}
    call_command("telegram_webhook", "info")
    assert "https://wartiket.example/telegram/webhook/" in capsys.readouterr().out

    # Polling can't run while a webhook is set: runbot says what to do instead of fighting it.
    with pytest.raises(CommandError, match="telegram_webhook delete"):
        call_command("runbot")

    call_command("telegram_webhook", "delete")
    assert telegram_on.webhook == {}


@pytest.mark.django_db
def test_telegram_webhook_refuses_to_set_a_webhook_without_a_secret(telegram_on, settings):
    settings.TELEGRAM_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="TELEGRAM_WEBHOOK_SECRET"):
        call_command("telegram_webhook", "set", "https://wartiket.example/telegram/webhook/")
    assert telegram_on.calls("setWebhook") == []


@pytest.mark.django_db
def test_runbot_says_so_when_telegram_rejects_the_token(telegram_on, settings):
    settings.TELEGRAM_BOT_TOKEN = "42:not-the-token-the-server-knows"
    with pytest.raises(CommandError, match="rejected TELEGRAM_BOT_TOKEN"):
        call_command("runbot")
