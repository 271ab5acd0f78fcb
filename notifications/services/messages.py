"""The text of each notification, rendered from ``templates/notifications/messages/<kind>.txt``.

Templates are Telegram HTML (``parse_mode=HTML``); Django's autoescaping keeps user data (names,
locations) from breaking the markup. Indonesian by default, English for English-speaking Telegram users.
"""

from __future__ import annotations

import datetime
import re

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation

from notifications.models import Notification
from queueing.models import DrawEntry, Slot, Ticket


class Gone(Exception):
    """The event's object is gone or the message is pointless now: skip it, don't retry."""


def render(notification: Notification, language: str, *, now: datetime.datetime | None = None) -> str:
    now = now or timezone.now()
    with translation.override(language):
        context = _context(notification, now)
        return tidy(render_to_string(f"notifications/messages/{notification.kind}.txt", context))


def tidy(text: str) -> str:
    """Template loops leave stray blank lines and trailing spaces; Telegram shows them all."""
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return re.sub(r"\n{3,}", "\n\n", text)


def site_url(path: str = "/") -> str:
    return settings.TELEGRAM_SITE_URL.rstrip("/") + path


def war_url(slot: Slot) -> str:
    try:
        return site_url(reverse("queueing:war", kwargs={"slot_id": slot.pk}))
    except NoReverseMatch:
        return site_url()


def _context(notification: Notification, now: datetime.datetime) -> dict:
    kind = notification.kind
    if kind in (Notification.Kind.TICKET_RESERVED, Notification.Kind.TICKET_CANCELLED):
        ticket = Ticket.objects.select_related("slot__location").filter(code=notification.object_ref).first()
        if ticket is None:
            raise Gone(f"ticket {notification.object_ref} no longer exists")
        return {"ticket": ticket, "slot": ticket.slot, "location": ticket.slot.location}
    if kind == Notification.Kind.REMINDER:
        slot = Slot.objects.select_related("location").filter(pk=notification.object_ref).first()
        if slot is None:
            raise Gone(f"slot {notification.object_ref} no longer exists")
        if now >= slot.closes_at:
            raise Gone(f"the war for slot {slot.pk} is already over")
        minutes = max(0, round((slot.war_opens_at - now).total_seconds() / 60))
        return {
            "slot": slot,
            "location": slot.location,
            "minutes": minutes,
            "open": now >= slot.war_opens_at,
            "war_url": war_url(slot),
        }
    if kind == Notification.Kind.LINKED:
        return {"user": notification.user}
    if kind == Notification.Kind.DRAW_WAITING:
        entry = (
            DrawEntry.objects.select_related("slot__location")
            .filter(slot_id=notification.object_ref, user_id=notification.user_id)
            .first()
        )
        if entry is None or entry.outcome != DrawEntry.Outcome.WAITING:
            # Promoted meanwhile (their ticket message says so) or withdrawn: nothing to tell any more.
            raise Gone(f"no waiting entry of user {notification.user_id} in slot {notification.object_ref}")
        return {"entry": entry, "slot": entry.slot, "location": entry.slot.location, "war_url": war_url(entry.slot)}
    raise Gone(f"unknown notification kind {kind!r}")
