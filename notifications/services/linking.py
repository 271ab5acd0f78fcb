"""Linking a Telegram chat to an account with a one-time, expiring deep-link token, and unlinking it.

The profile page issues a token and shows ``https://t.me/<bot>?start=<token>``; the bot's ``/start
<token>`` spends it. The token is single-use by a state-conditional UPDATE, so two ``/start`` messages
racing with the same token link once. Only the token's SHA-256 is stored.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import hash_secret
from notifications.models import LinkToken, Notification, TelegramLink
from notifications.services import queue
from notifications.services.errors import CodedError

log = logging.getLogger(__name__)


class LinkError(CodedError):
    """A /start token that can't link; ``code`` is stable, the message is for the user."""

    messages = {
        "invalid": _("Tautan ini tidak dikenal. Buka profil di situs War Tiket dan tekan Hubungkan Telegram lagi."),
        "used": _("Tautan ini sudah dipakai. Buat tautan baru dari profil di situs War Tiket."),
        "expired": _("Tautan ini sudah kedaluwarsa. Buat tautan baru dari profil di situs War Tiket."),
    }


@dataclass(frozen=True)
class ChatInfo:
    chat_id: int
    username: str = ""
    language_code: str = ""


def issue_token(user) -> tuple[str, LinkToken]:
    """A new deep-link token for ``user``; earlier unused ones stop working (one outstanding at a time)."""
    raw = secrets.token_urlsafe(24)  # 32 characters of [A-Za-z0-9_-]: what Telegram allows in ?start=
    now = timezone.now()
    with transaction.atomic():
        LinkToken.objects.filter(user=user, used_at__isnull=True).delete()
        token = LinkToken.objects.create(
            user=user,
            token_hash=hash_secret(raw),
            expires_at=now + datetime.timedelta(minutes=settings.TELEGRAM_LINK_TOKEN_MINUTES),
        )
    return raw, token


def deep_link(raw: str) -> str:
    return f"https://t.me/{settings.TELEGRAM_BOT_USERNAME}?start={raw}"


def link_chat(raw: str, chat: ChatInfo) -> TelegramLink:
    """Spend ``raw`` and link ``chat`` to its account; queues the "you're linked" message after commit."""
    now = timezone.now()
    token = LinkToken.objects.filter(token_hash=hash_secret(raw or "")).first()
    if token is None:
        raise LinkError("invalid")
    with transaction.atomic():
        spent = LinkToken.objects.filter(pk=token.pk, used_at__isnull=True, expires_at__gt=now).update(
            used_at=now, used_by_chat=chat.chat_id
        )
        if not spent:
            token.refresh_from_db()
            raise LinkError("used" if token.used_at else "expired")
        # A chat belongs to one account: linking it to this one takes it away from any other.
        TelegramLink.objects.filter(chat_id=chat.chat_id).exclude(user_id=token.user_id).delete()
        link, _created = TelegramLink.objects.update_or_create(
            user_id=token.user_id,
            defaults={
                "chat_id": chat.chat_id,
                "username": chat.username or "",
                "language_code": chat.language_code or "",
                "active": True,
                "linked_at": now,
                "deactivated_at": None,
                "deactivated_reason": "",
            },
        )
        notification = Notification.objects.create(
            user_id=token.user_id, kind=Notification.Kind.LINKED, object_ref=f"token:{token.pk}"
        )
        queue.deliver_after_commit(notification.pk)
    log.info("telegram: chat %s linked to user %s", chat.chat_id, token.user_id)
    return link


def active_link(chat_id: int) -> TelegramLink | None:
    return TelegramLink.objects.select_related("user").filter(chat_id=chat_id, active=True).first()


def seen(chat: ChatInfo) -> None:
    """The chat wrote to the bot: it has not blocked it (any more), and messages follow its current language."""
    TelegramLink.objects.filter(chat_id=chat.chat_id, active=False).update(
        active=True, deactivated_at=None, deactivated_reason=""
    )
    if chat.language_code:
        TelegramLink.objects.filter(chat_id=chat.chat_id).exclude(language_code=chat.language_code).update(
            language_code=chat.language_code
        )


def unlink_user(user) -> bool:
    deleted, _ = TelegramLink.objects.filter(user=user).delete()
    return bool(deleted)


def unlink_chat(chat_id: int) -> bool:
    deleted, _ = TelegramLink.objects.filter(chat_id=chat_id).delete()
    return bool(deleted)


def deactivate(chat_id: int, reason: str) -> None:
    """Telegram refuses this chat (the user blocked the bot): stop sending until they link again."""
    changed = TelegramLink.objects.filter(chat_id=chat_id, active=True).update(
        active=False, deactivated_at=timezone.now(), deactivated_reason=reason[:255]
    )
    if changed:
        log.warning("telegram: link for chat %s deactivated: %s", chat_id, reason)
