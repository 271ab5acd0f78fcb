"""Telegram test fixtures: a fake Bot API server (real HTTP on 127.0.0.1) and real Celery workers."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import Client

from notifications.models import TelegramLink
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.live import logged_process

SECRET = "webhook-secret-for-tests"
_chat_ids = itertools.count(700_001)


@pytest.fixture
def fake_telegram():
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def telegram_on(settings, fake_telegram) -> FakeTelegram:
    """Telegram configured: our token, the fake server as the Bot API, a webhook secret."""
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_API_URL = fake_telegram.url
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    return fake_telegram


def new_chat_id() -> int:
    return next(_chat_ids)


def link(user, *, chat_id: int | None = None, language_code: str = "id") -> TelegramLink:
    return TelegramLink.objects.create(user=user, chat_id=chat_id or new_chat_id(), language_code=language_code)


def post_update(update: dict, *, secret: str | None = SECRET):
    """POST an update to our webhook, as Telegram would."""
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret} if secret is not None else {}
    return Client().post("/telegram/webhook/", update, content_type="application/json", **headers)


def say(fake: FakeTelegram, chat_id: int, text: str, **kwargs) -> list[str]:
    """Send ``text`` from ``chat_id`` through the webhook; return the bot's replies to that chat."""
    before = len(fake.sent(chat_id))
    response = post_update(fake.message_update(chat_id, text, **kwargs))
    assert response.status_code == 200, response.content
    return [call.text for call in fake.sent(chat_id)[before:]]


@contextmanager
def celery_worker(fake: FakeTelegram, log_dir: Path, **env: str):
    """A real ``celery worker`` process (solo pool) on the test database and Redis broker."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    log_path = log_dir / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "wartiket",
        "worker",
        "--pool",
        "solo",
        "--loglevel",
        "info",
        "--hostname",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with logged_process(argv, log_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url, **env) as proc:
        yield proc


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode
