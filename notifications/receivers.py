"""Ticket events → Celery, after commit. Runs inside the reservation request: an in-memory append, no I/O."""

from __future__ import annotations

from notifications.models import Notification
from notifications.services import queue


def ticket_reserved(sender, code: str, **kwargs) -> None:
    queue.ticket_event_after_commit(Notification.Kind.TICKET_RESERVED.value, code)


def ticket_cancelled(sender, code: str, **kwargs) -> None:
    queue.ticket_event_after_commit(Notification.Kind.TICKET_CANCELLED.value, code)


def draw_made(sender, slot_id: int, **kwargs) -> None:
    queue.draw_result_after_commit(slot_id)
