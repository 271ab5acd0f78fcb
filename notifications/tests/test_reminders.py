"""Reminders N minutes before a war the user opted in to (the Celery beat task's logic)."""

from __future__ import annotations

import datetime
import json

import pytest
from django.utils import timezone

from notifications import tasks
from notifications.models import Notification, ReminderSubscription
from notifications.services import delivery, notify
from notifications.tests.conftest import link
from queueing.models import Location
from queueing.services import clock
from tests.factory import make_slot, make_user
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db


def subscribe(user, slot) -> None:
    ReminderSubscription.objects.create(user=user, slot=slot)


def test_a_reminder_is_recorded_once_when_the_war_opens_within_the_lead_time(telegram_on, settings):
    settings.TELEGRAM_REMINDER_MINUTES = 15
    buyer = make_user()
    chat = link(buyer)
    soon = make_slot(opens_in=10 * 60, label="10:00")
    later = make_slot(opens_in=60 * 60, label="11:00")
    already_open = make_slot(opens_in=-60, label="12:00")
    for slot in (soon, later, already_open):
        subscribe(buyer, slot)

    now = clock.redis_now()
    [notification_id] = notify.record_due_reminders(now)
    assert notify.record_due_reminders(now) == []  # recorded once, queued once
    notification = Notification.objects.get(pk=notification_id)
    assert (notification.kind, notification.object_ref) == (Notification.Kind.REMINDER, str(soon.pk))

    assert delivery.deliver(notification_id).outcome == "sent"
    [message] = telegram_on.sent(chat.chat_id)
    assert "War dibuka dalam 10 menit" in message.text
    assert soon.location.name in message.text
    assert f"/war/{soon.pk}/" in message.text

    # The later war's turn comes when its own lead time starts.
    then = later.war_opens_at - datetime.timedelta(minutes=14)
    assert [Notification.objects.get(pk=i).object_ref for i in notify.record_due_reminders(then)] == [str(later.pk)]


def test_reminders_skip_users_without_an_active_link(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    chat.active = False
    chat.save()
    subscribe(buyer, make_slot(opens_in=5 * 60))
    assert notify.record_due_reminders(clock.redis_now()) == []


def test_no_reminder_for_a_war_at_a_boutique_deactivated_since(telegram_on, settings):
    settings.TELEGRAM_REMINDER_MINUTES = 15
    buyer = make_user()
    link(buyer)
    soon = make_slot(opens_in=10 * 60, location="tutup")
    subscribe(buyer, soon)
    Location.objects.filter(pk=soon.location_id).update(active=False)
    assert notify.record_due_reminders(clock.redis_now()) == []
    Location.objects.filter(pk=soon.location_id).update(active=True)
    assert len(notify.record_due_reminders(clock.redis_now())) == 1  # negative control


def test_a_reminder_that_missed_its_war_is_skipped_not_sent(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    slot = make_slot(opens_in=-120, closes_in=-60)
    notification = Notification.objects.create(user=buyer, kind=Notification.Kind.REMINDER, object_ref=str(slot.pk))
    assert delivery.deliver(notification.pk).outcome == Notification.Status.SKIPPED
    notification.refresh_from_db()
    assert "already over" in notification.last_error
    assert telegram_on.attempts(chat.chat_id) == []


def queued_task_names() -> list[str]:
    return [json.loads(raw)["headers"]["task"] for raw in get_redis().lrange("celery", 0, -1)]


def test_the_beat_tasks_queue_due_reminders_and_lost_notifications(telegram_on):
    buyer = make_user()
    link(buyer)
    subscribe(buyer, make_slot(opens_in=5 * 60))
    assert tasks.send_due_reminders() == 1
    assert queued_task_names() == ["notifications.deliver"]

    Notification.objects.update(updated_at=timezone.now() - datetime.timedelta(minutes=10))
    assert tasks.sweep() == 1  # recorded, but its task never ran
    assert queued_task_names() == ["notifications.deliver", "notifications.deliver"]
