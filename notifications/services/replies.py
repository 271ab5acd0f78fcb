"""The bot's answers, one function per command, rendered from ``templates/notifications/bot/``.

Plain synchronous functions over the same services as the web (linking, reminders, quota, tickets), so
the aiogram handlers in ``notifications/bot.py`` only translate updates into calls and replies back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from notifications.models import language_for
from notifications.services import linking, reminders, status
from notifications.services.linking import ChatInfo, LinkError
from notifications.services.messages import tidy
from notifications.services.reminders import ReminderError
from queueing.models import Ticket


@dataclass(frozen=True)
class Reply:
    text: str
    # Inline buttons, one per row: (label, callback data).
    buttons: list[tuple[str, str]] = field(default_factory=list)


def render(name: str, language: str, **context) -> str:
    with translation.override(language):
        return tidy(render_to_string(f"notifications/bot/{name}.txt", context))


def _reply(name: str, chat: ChatInfo, **context) -> Reply:
    return Reply(render(name, language_for(chat.language_code), **context))


def start(chat: ChatInfo, payload: str | None) -> Reply | None:
    """``/start`` or ``/start <token>``. A successful link answers through the "linked" notification."""
    if payload:
        try:
            linking.link_chat(payload, chat)
        except LinkError as exc:
            with translation.override(language_for(chat.language_code)):
                return Reply(exc.message)
        return None
    link = linking.active_link(chat.chat_id)
    return _reply(
        "welcome",
        chat,
        link=link,
        site_url=settings.TELEGRAM_SITE_URL,
        reminder_minutes=settings.TELEGRAM_REMINDER_MINUTES,
    )


def show_help(chat: ChatInfo) -> Reply:
    return _reply("help", chat, reminder_minutes=settings.TELEGRAM_REMINDER_MINUTES)


def backend_status(chat: ChatInfo) -> Reply:
    now = status.server_now()
    health = status.health()
    wars = status.next_wars(now) if health.postgres else []
    quota_available = any(w.remaining for w in wars)
    language = language_for(chat.language_code)
    text = render("status", language, health=health, wars=wars, now=now, quota_available=quota_available)
    with translation.override(language):
        buttons = [
            (
                translation.gettext("🔔 Ingatkan #%(id)s %(label)s") % {"id": w.slot_id, "label": w.time_label},
                f"remind:{w.slot_id}",
            )
            for w in wars
            if not w.is_open and now < w.opens_at
        ]
    return Reply(text, buttons)


def tickets(chat: ChatInfo) -> Reply:
    link = linking.active_link(chat.chat_id)
    if link is None:
        return _reply("not_linked", chat, site_url=settings.TELEGRAM_SITE_URL)
    mine = (
        Ticket.objects.filter(user_id=link.user_id, status=Ticket.Status.ACTIVE)
        .select_related("slot__location")
        .order_by("slot__date", "slot__time_label")
    )
    return _reply("tickets", chat, tickets=list(mine), user=link.user)


def remind(chat: ChatInfo, argument: str | None) -> Reply:
    link = linking.active_link(chat.chat_id)
    if link is None:
        return _reply("not_linked", chat, site_url=settings.TELEGRAM_SITE_URL)
    try:
        slot, created = reminders.subscribe(link.user, reminders.parse_slot_id(argument))
    except ReminderError as exc:
        with translation.override(language_for(chat.language_code)):
            return Reply(exc.message)
    return _reply("reminder_set", chat, slot=slot, created=created, minutes=settings.TELEGRAM_REMINDER_MINUTES)


def stop(chat: ChatInfo) -> Reply:
    unlinked = linking.unlink_chat(chat.chat_id)
    return _reply("stopped", chat, unlinked=unlinked, site_url=settings.TELEGRAM_SITE_URL)
