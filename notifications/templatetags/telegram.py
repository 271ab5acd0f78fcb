"""``{% telegram_state user as tg %}``: what the profile's Telegram card needs to know."""

from __future__ import annotations

from django import template
from django.conf import settings

from notifications.models import TelegramLink
from notifications.services import telegram

register = template.Library()


@register.simple_tag
def telegram_state(user) -> dict:
    link = None
    if getattr(user, "is_authenticated", False):
        link = TelegramLink.objects.filter(user=user).first()
    return {"enabled": telegram.enabled(), "link": link, "bot_username": settings.TELEGRAM_BOT_USERNAME}
