"""Which events deserve a message: one ``Notification`` row per (user, kind, object), never two.

Rows are recorded only for users with an active Telegram link; ``get_or_create`` over the unique
constraint makes recording idempotent, so a task that runs twice, or the sweeper's backfill racing the
original task, still yields one row.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db.models import Exists, OuterRef

from notifications.models import Notification, ReminderSubscription, TelegramLink
from queueing.models import DrawEntry, Slot, Ticket

Kind = Notification.Kind
TICKET_KINDS = {Kind.TICKET_RESERVED, Kind.TICKET_CANCELLED}


def record_ticket_event(kind: str, code: str) -> int | None:
    """The notification id for a ticket event, or None when nobody is to be told."""
    return record_ticket_events([(kind, code)])[0]


def record_ticket_events(events) -> list[int | None]:
    """``record_ticket_event`` for each (kind, code), in order: one query finds whose tickets have an active
    Telegram link (a war's batch is mostly buyers without one), then one row per person to be told."""
    for kind, _code in events:
        if kind not in TICKET_KINDS:
            raise ValueError(f"not a ticket event: {kind!r}")
    linked = dict(
        Ticket.objects.filter(code__in={code for _kind, code in events})
        .filter(Exists(TelegramLink.objects.filter(user_id=OuterRef("user_id"), active=True)))
        .values_list("code", "user_id")
    )
    ids: list[int | None] = []
    for kind, code in events:
        user_id = linked.get(code)
        if user_id is None:
            ids.append(None)
            continue
        notification, _ = Notification.objects.get_or_create(user_id=user_id, kind=kind, object_ref=code)
        ids.append(notification.pk)
    return ids


def record_draw_waiting(slot_id: int) -> list[int]:
    """New notifications for the slot's entrants on its waiting list (linked to Telegram): their place.

    Idempotent over the unique constraint: a draw run twice, or the task retried, tells nobody twice.
    """
    waiting = (
        DrawEntry.objects.filter(slot_id=slot_id, outcome=DrawEntry.Outcome.WAITING)
        .filter(Exists(TelegramLink.objects.filter(user_id=OuterRef("user_id"), active=True)))
        .values_list("user_id", flat=True)
    )
    ids = []
    for user_id in waiting:
        notification, created = Notification.objects.get_or_create(
            user_id=user_id, kind=Kind.DRAW_WAITING, object_ref=str(slot_id)
        )
        if created:
            ids.append(notification.pk)
    return ids


def record_due_reminders(now: datetime.datetime) -> list[int]:
    """New reminders whose moment has come: the war opens within the lead time and has not opened yet."""
    lead = datetime.timedelta(minutes=settings.TELEGRAM_REMINDER_MINUTES)
    due = (
        ReminderSubscription.objects.filter(slot__war_opens_at__gt=now, slot__war_opens_at__lte=now + lead)
        # Not for a boutique deactivated since: buyers no longer see its wars.
        .filter(slot__in=Slot.objects.visible())
        .filter(Exists(TelegramLink.objects.filter(user_id=OuterRef("user_id"), active=True)))
        .values_list("user_id", "slot_id")
    )
    ids = []
    for user_id, slot_id in due:
        notification, created = Notification.objects.get_or_create(
            user_id=user_id, kind=Kind.REMINDER, object_ref=str(slot_id)
        )
        # Only new rows: one recorded earlier has its task already (or the sweeper finds it if lost).
        if created:
            ids.append(notification.pk)
    return ids


def backfill_ticket_events(
    now: datetime.datetime, *, grace: datetime.timedelta, window: datetime.timedelta
) -> list[int]:
    """Ticket events whose task never ran (e.g. the broker was down when the ticket was taken).

    Looks back ``window``; leaves the last ``grace`` alone, for tasks still waiting in the queue.
    Only tickets taken (or cancelled) after the user linked Telegram count.
    """
    linked = TelegramLink.objects.filter(user_id=OuterRef("user_id"), active=True)
    ids = []
    for kind, moment in ((Kind.TICKET_RESERVED, "created_at"), (Kind.TICKET_CANCELLED, "cancelled_at")):
        recorded = Notification.objects.filter(user_id=OuterRef("user_id"), kind=kind, object_ref=OuterRef("code"))
        tickets = Ticket.objects.filter(
            **{f"{moment}__gte": now - window, f"{moment}__lt": now - grace},
        ).filter(
            Exists(linked.filter(linked_at__lte=OuterRef(moment))),
            ~Exists(recorded),
        )
        if kind == Kind.TICKET_CANCELLED:
            tickets = tickets.filter(status=Ticket.Status.CANCELLED)
        for user_id, code in tickets.values_list("user_id", "code")[:500]:
            notification, _ = Notification.objects.get_or_create(user_id=user_id, kind=kind, object_ref=code)
            ids.append(notification.pk)
    return ids
