"""The Telegram bot (aiogram 3): updates in, replies out; every answer comes from ``services/replies.py``.

Two ways in, same handlers: ``run_polling`` (``manage.py runbot``) and ``feed_webhook`` (the view at
``/telegram/webhook/``). Handlers are async; the services are Django's synchronous ORM, reached through
``sync_to_async`` with the connection hygiene a long-running process needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramServerError, TelegramUnauthorizedError
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection
from django.utils import translation

from notifications.services import linking, replies, telegram, updates
from notifications.services.linking import ChatInfo
from notifications.services.replies import Reply

log = logging.getLogger(__name__)


def _drop_stale_connections() -> None:
    # A bot runs for days: drop connections that went stale or broken between updates, as Django does
    # around each request. Never inside a transaction (only a test's can be open here): that would end it.
    if not connection.in_atomic_block:
        close_old_connections()


def _call_service(function: Callable[..., Reply | None], chat: ChatInfo, *args) -> Reply | None:
    _drop_stale_connections()
    try:
        linking.seen(chat)
        return function(chat, *args)
    finally:
        _drop_stale_connections()


call_service = sync_to_async(_call_service)


def _chat_of(message: Message) -> ChatInfo:
    user = message.from_user
    return ChatInfo(
        chat_id=message.chat.id,
        username=(user.username or "") if user else "",
        language_code=(user.language_code or "") if user else "",
    )


async def _answer(message: Message, reply: Reply | None) -> None:
    if reply is None:
        return
    markup = None
    if reply.buttons:
        rows = [[InlineKeyboardButton(text=label, callback_data=data)] for label, data in reply.buttons]
        markup = InlineKeyboardMarkup(inline_keyboard=rows)
    await message.answer(reply.text, reply_markup=markup)


async def on_start(message: Message, command: CommandObject) -> None:
    await _answer(message, await call_service(replies.start, _chat_of(message), command.args))


async def on_status(message: Message) -> None:
    await _answer(message, await call_service(replies.backend_status, _chat_of(message)))


async def on_tickets(message: Message) -> None:
    await _answer(message, await call_service(replies.tickets, _chat_of(message)))


async def on_remind(message: Message, command: CommandObject) -> None:
    await _answer(message, await call_service(replies.remind, _chat_of(message), command.args))


async def on_stop(message: Message) -> None:
    await _answer(message, await call_service(replies.stop, _chat_of(message)))


async def on_help(message: Message) -> None:
    await _answer(message, await call_service(replies.show_help, _chat_of(message)))


async def on_remind_button(callback: CallbackQuery, bot: Bot) -> None:
    user = callback.from_user
    # In a private chat the chat id is the user's id, and the button's message may be too old to read.
    chat = ChatInfo(chat_id=user.id, username=user.username or "", language_code=user.language_code or "")
    reply = await call_service(replies.remind, chat, (callback.data or "").partition(":")[2])
    await callback.answer()
    if reply is not None:
        await bot.send_message(chat.chat_id, reply.text)


class OncePerUpdate(BaseMiddleware):
    """Handles each update id once (a webhook retried by Telegram, a duplicate delivery); counts them."""

    def __init__(self) -> None:
        self.handled = 0

    async def __call__(
        self,
        handler: Callable[[Update, dict[str, Any]], Awaitable[Any]],
        event: Update,
        data: dict[str, Any],
    ) -> Any:
        bot: Bot = data["bot"]
        if not await sync_to_async(updates.first_time)(bot.id, event.update_id):
            log.info("telegram: update %s already handled, ignored", event.update_id)
            return None
        try:
            result = await handler(event, data)
        except Exception:
            await sync_to_async(updates.forget)(bot.id, event.update_id)
            raise
        self.handled += 1
        return result


def build_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()
    once = OncePerUpdate()
    dispatcher.update.outer_middleware(once)
    dispatcher["once"] = once

    router = Router(name="wartiket")
    # Accounts link to private chats; the bot ignores groups it is added to.
    router.message.filter(F.chat.type == "private")
    router.message.register(on_start, CommandStart())
    router.message.register(on_status, Command("status"))
    router.message.register(on_tickets, Command("tickets", "tiket"))
    router.message.register(on_remind, Command("remind", "ingatkan"))
    router.message.register(on_stop, Command("stop"))
    router.message.register(on_help, Command("help", "bantuan"))
    router.message.register(on_help)  # anything else: the help text
    router.callback_query.register(on_remind_button, F.data.startswith("remind:"))
    dispatcher.include_router(router)
    return dispatcher


@cache
def webhook_dispatcher() -> Dispatcher:
    return build_dispatcher()


async def feed_webhook(data: dict) -> None:
    """Handle one update posted to the webhook. Raises if handling failed (Telegram will retry)."""
    bot = telegram.make_bot()
    try:
        update = Update.model_validate(data, context={"bot": bot})
        await webhook_dispatcher().feed_update(bot, update)
    finally:
        await bot.session.close()


def _commands(language: str) -> list[BotCommand]:
    with translation.override(language):
        return [
            BotCommand(command="status", description=translation.gettext("Status backend dan war berikutnya")),
            BotCommand(command="tickets", description=translation.gettext("Tiket aktif kamu")),
            BotCommand(
                command="remind", description=translation.gettext("Ingatkan sebelum war dibuka: /remind <slot>")
            ),
            BotCommand(command="stop", description=translation.gettext("Putuskan akun dari Telegram")),
            BotCommand(command="help", description=translation.gettext("Bantuan")),
        ]


# The longest pause between two attempts to reach the Bot API before polling starts (aiogram's own
# polling loop backs off up to 5 s too, once it runs).
CONNECT_RETRY_CAP_SECONDS = 5.0


async def _prepare_polling(bot: Bot) -> None:
    """Checks no webhook is set, sets the command menu, and learns who we are (``start_polling`` needs it).

    Raises RuntimeError when polling can never work (token rejected, a webhook set), and aiogram's
    TelegramNetworkError / TelegramServerError when the Bot API can't be reached right now.
    """
    try:
        info = await bot.get_webhook_info()
    except TelegramUnauthorizedError:
        raise RuntimeError("Telegram rejected TELEGRAM_BOT_TOKEN (401 Unauthorized).") from None
    if info.url:
        raise RuntimeError(
            f"a webhook is set ({info.url}): Telegram refuses polling while it is. "
            "Run `manage.py telegram_webhook delete` first."
        )
    try:
        await bot.set_my_commands(_commands("id"))
        await bot.set_my_commands(_commands("en"), language_code="en")
    except (TelegramNetworkError, TelegramServerError):
        raise
    except TelegramAPIError as exc:
        log.warning("telegram: could not set the command menu: %s", exc)
    await bot.me()


async def _until_prepared(bot: Bot, stop: asyncio.Event) -> bool:
    """``_prepare_polling`` until the Bot API answers (False: told to stop first).

    An unreachable Bot API (no network yet, Telegram down, a proxy restarting) is waited out, not a
    reason to exit: one log line when it starts failing, one when it answers, attempts at growing
    intervals of up to ``CONNECT_RETRY_CAP_SECONDS``.
    """
    failures = 0
    started = time.monotonic()
    while not stop.is_set():
        try:
            await _prepare_polling(bot)
        except (TelegramNetworkError, TelegramServerError) as exc:
            failures += 1
            if failures == 1:
                log.warning(
                    "telegram: can't reach the Bot API (%s); retrying at growing intervals of up to %.0f s",
                    exc,
                    CONNECT_RETRY_CAP_SECONDS,
                )
        else:
            if failures:
                log.warning(
                    "telegram: reached the Bot API after %d failed attempt(s) in %.0f s",
                    failures,
                    time.monotonic() - started,
                )
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(2.0 ** (failures - 1), CONNECT_RETRY_CAP_SECONDS))
    return False


async def run_polling(*, polling_timeout: int = 10) -> int:
    """Long-poll until SIGINT/SIGTERM; returns how many updates were handled."""
    bot = telegram.make_bot()
    dispatcher = build_dispatcher()
    # Until aiogram's polling installs its own handlers, a signal ends the wait for the Bot API.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        prepared = await _until_prepared(bot, stop)
    except BaseException:
        await bot.session.close()
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if not prepared:
        await bot.session.close()
        return 0
    await dispatcher.start_polling(bot, polling_timeout=polling_timeout, handle_signals=True, close_bot_session=True)
    return dispatcher["once"].handled
