"""Celery tasks: thin wrappers over ``services/``. They take ids, are safe to run twice, and ack late.

``acks_late`` + ``task_reject_on_worker_lost`` (settings) hand a killed worker's task back to the
broker; the Notification row's state-conditional claim makes that second run send nothing twice.
"""

from __future__ import annotations

import datetime
import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from notifications.services import delivery, notify
from queueing.services import clock

log = logging.getLogger(__name__)

SWEEP_GRACE = datetime.timedelta(minutes=5)
BACKFILL_WINDOW = datetime.timedelta(hours=6)


def _deliver_or_schedule(notification_id: int) -> str:
    result = delivery.deliver(notification_id)
    if result.retry_in is not None:
        # A new message rather than self.retry(): the same path for every caller, no retry budget to
        # run out of (the row counts attempts and gives up by itself).
        deliver_notification.apply_async((notification_id,), countdown=max(0.0, result.retry_in))
    return result.outcome


@shared_task(name="notifications.deliver", acks_late=True, ignore_result=True)
def deliver_notification(notification_id: int) -> str:
    return _deliver_or_schedule(notification_id)


@shared_task(name="notifications.ticket_event", acks_late=True, ignore_result=True)
def ticket_event(kind: str, code: str) -> str:
    """One ticket event: what web processes queued before ``ticket_events`` batches (kept for those messages)."""
    notification_id = notify.record_ticket_event(kind, code)
    if notification_id is None:
        return "not_linked"
    return _deliver_or_schedule(notification_id)


@shared_task(name="notifications.ticket_events", acks_late=True, ignore_result=True)
def ticket_events(events: list[list[str]]) -> int:
    """A web process's batch of ticket events ([kind, code], services/publisher.py): record each, queue its send.

    Each send is its own ``notifications.deliver`` task, so a batch is spread over the workers instead of
    sending one Telegram message after another here. Run twice (a worker lost), it records nothing twice
    and the claim sends nothing twice. Returns how many notifications were queued.
    """
    queued = 0
    for notification_id in notify.record_ticket_events(events):
        if notification_id is not None:
            deliver_notification.delay(notification_id)
            queued += 1
    return queued


@shared_task(name="notifications.draw_result", acks_late=True, ignore_result=True)
def draw_result(slot_id: int) -> int:
    """A draw is made: each entrant on its waiting list hears their place (winners hear of their ticket)."""
    ids = notify.record_draw_waiting(slot_id)
    for notification_id in ids:
        deliver_notification.delay(notification_id)
    return len(ids)


@shared_task(name="notifications.send_due_reminders", acks_late=True, ignore_result=True)
def send_due_reminders() -> int:
    ids = notify.record_due_reminders(clock.redis_now())
    for notification_id in ids:
        deliver_notification.delay(notification_id)
    if ids:
        log.info("reminders: %s queued (%s minutes ahead)", len(ids), settings.TELEGRAM_REMINDER_MINUTES)
    return len(ids)


@shared_task(name="notifications.sweep", acks_late=True, ignore_result=True)
def sweep() -> int:
    """The safety net: notifications whose task was lost, and ticket events that never got queued."""
    now = timezone.now()
    ids = set(delivery.due_for_sweep(now, grace=SWEEP_GRACE))
    ids.update(notify.backfill_ticket_events(now, grace=SWEEP_GRACE, window=BACKFILL_WINDOW))
    for notification_id in sorted(ids):
        deliver_notification.delay(notification_id)
    if ids:
        log.warning("sweep: re-queued %s notifications whose task was lost", len(ids))
    return len(ids)
