"""The one way this project talks to the Bot API: aiogram, pointed at ``TELEGRAM_API_URL`` when set.

Workers are synchronous (Celery), aiogram is asyncio: each worker thread keeps one private event loop
and one Bot (one aiohttp connection pool) for all its sends, instead of building and tearing down a
session per message (aiogram's session close alone waits 250 ms). Per thread, because one loop can't
run for two threads at once (a threads pool, or tests delivering concurrently).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from aiogram import Bot


def enabled() -> bool:
    return bool(settings.TELEGRAM_BOT_TOKEN)


def make_bot(*, timeout: float | None = None) -> Bot:
    """A Bot for the configured token and API server. The caller closes ``bot.session``."""
    if not settings.TELEGRAM_BOT_TOKEN:
        raise RuntimeError("TELEGRAM_BOT_TOKEN is not set")
    # Imported here, not at the top: aiogram (with aiohttp and pydantic models) takes ~2 s to import, and
    # the web processes import this module through the URLconf but only the bot and the worker send.
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.enums import ParseMode

    kwargs = {"timeout": timeout or settings.TELEGRAM_HTTP_TIMEOUT}
    if settings.TELEGRAM_API_URL:
        kwargs["api"] = TelegramAPIServer.from_base(settings.TELEGRAM_API_URL)
    return Bot(
        settings.TELEGRAM_BOT_TOKEN,
        session=AiohttpSession(**kwargs),
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


@dataclass
class _Sender:
    pid: int
    config: tuple[str, str]
    loop: asyncio.AbstractEventLoop
    bot: Bot

    def close(self) -> None:
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.bot.session.close())
            self.loop.close()


_local = threading.local()
_all_senders: list[_Sender] = []
_all_lock = threading.Lock()


def _get_sender() -> _Sender:
    sender: _Sender | None = getattr(_local, "sender", None)
    config = (settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_API_URL)
    # A loop or connection inherited over fork() belongs to the parent: build new ones per pid.
    if sender is None or sender.pid != os.getpid() or sender.config != config:
        if sender is not None and sender.pid == os.getpid():
            sender.close()
            with _all_lock:
                _all_senders.remove(sender)
        sender = _Sender(os.getpid(), config, asyncio.new_event_loop(), make_bot())
        _local.sender = sender
        with _all_lock:
            _all_senders.append(sender)
    return sender


@atexit.register
def _close_senders() -> None:
    for sender in _all_senders:
        if sender.pid == os.getpid():
            try:
                sender.close()
            except RuntimeError:
                pass  # its loop is running in a thread that is still alive: let the OS reclaim it


def send_message(chat_id: int, text: str) -> int:
    """Send one HTML message; returns Telegram's message id. Raises aiogram's Telegram* errors."""
    sender = _get_sender()
    message = sender.loop.run_until_complete(sender.bot.send_message(chat_id, text))
    return message.message_id


def close() -> None:
    """Close this thread's sender now (threads that send and then end)."""
    sender: _Sender | None = getattr(_local, "sender", None)
    if sender is not None and sender.pid == os.getpid():
        sender.close()
        _local.sender = None
        with _all_lock:
            _all_senders.remove(sender)
