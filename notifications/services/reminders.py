"""Opting in to a reminder before a war opens (``/remind <slot>`` or the button under ``/status``)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from notifications.models import ReminderSubscription
from notifications.services.errors import CodedError
from queueing.models import Slot
from queueing.services import clock


class ReminderError(CodedError):
    messages = {
        "bad_slot": _("Tulis nomor slot, misalnya /remind 12. Nomornya ada di /status."),
        "not_found": _("Slot itu tidak ada. Lihat /status untuk war berikutnya."),
        "already_open": _("War untuk slot itu sudah dibuka, tidak perlu pengingat lagi."),
    }


def parse_slot_id(raw: str | None) -> int:
    try:
        value = int((raw or "").strip().lstrip("#"))
    except ValueError:
        raise ReminderError("bad_slot") from None
    if value <= 0:
        raise ReminderError("bad_slot")
    return value


def subscribe(user, slot_id: int) -> tuple[Slot, bool]:
    """Remind ``user`` before ``slot_id``'s war opens; returns the slot and whether this is new."""
    slot = Slot.objects.visible().filter(pk=slot_id).first()
    if slot is None:
        raise ReminderError("not_found")
    if clock.redis_now() >= slot.war_opens_at:
        raise ReminderError("already_open")
    _sub, created = ReminderSubscription.objects.get_or_create(user=user, slot=slot)
    return slot, created
