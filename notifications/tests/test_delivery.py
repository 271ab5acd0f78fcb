"""Delivering one notification against the fake Bot API: once, and the right thing on every Telegram answer."""

from __future__ import annotations

import datetime
import itertools
import logging
import threading

import pytest
from django.db import connection
from django.utils import timezone

from notifications.models import Notification
from notifications.services import delivery, notify, ratelimit, telegram
from notifications.tests.conftest import link
from queueing.models import Ticket
from tests.factory import make_slot, make_user
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db

Status = Notification.Status


_labels = itertools.count(0)


def make_ticket(user, slot=None, number=1) -> Ticket:
    if slot is None:
        n = next(_labels)
        # A day of its own per ticket: one person may hold only one ticket per war day.
        slot = make_slot(
            label=f"{8 + n // 60:02d}:{n % 60:02d}", date=timezone.localdate() + datetime.timedelta(days=2 + n)
        )
    return Ticket.objects.create(slot=slot, user=user, queue_number=number, reserved_at=timezone.now())


def reserved_notification(user, ticket=None) -> Notification:
    ticket = ticket or make_ticket(user)
    return Notification.objects.get(pk=notify.record_ticket_event(Notification.Kind.TICKET_RESERVED, ticket.code))


def test_it_sends_the_reserved_ticket_message_once_even_when_delivered_twice(telegram_on):
    buyer = make_user(full_name="Sari Dewi")
    chat = link(buyer)
    ticket = make_ticket(buyer)
    notification = reserved_notification(buyer, ticket)

    assert delivery.deliver(notification.pk).outcome == "sent"
    assert delivery.deliver(notification.pk).outcome == "noop"

    [message] = telegram_on.sent(chat.chat_id)
    assert f"#{ticket.queue_number}" in message.text
    assert ticket.code in message.text
    assert ticket.slot.location.name in message.text
    assert ticket.slot.time_label in message.text
    assert message.params["parse_mode"] == "HTML"
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.chat_id) == (Status.SENT, 1, chat.chat_id)
    assert notification.telegram_message_id is not None


def test_recording_the_same_event_twice_yields_one_notification(telegram_on):
    buyer = make_user()
    link(buyer)
    ticket = make_ticket(buyer)
    first = notify.record_ticket_event(Notification.Kind.TICKET_RESERVED, ticket.code)
    second = notify.record_ticket_event(Notification.Kind.TICKET_RESERVED, ticket.code)
    assert first == second
    assert Notification.objects.count() == 1


def test_nobody_is_notified_without_a_link(telegram_on):
    ticket = make_ticket(make_user())
    assert notify.record_ticket_event(Notification.Kind.TICKET_RESERVED, ticket.code) is None
    assert not Notification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_notification_send_one_message(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    notification = reserved_notification(buyer)
    outcomes = []
    barrier = threading.Barrier(6)

    def run():
        try:
            barrier.wait()
            outcomes.append(delivery.deliver(notification.pk).outcome)
        finally:
            telegram.close()
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(telegram_on.sent(chat.chat_id)) == 1
    assert outcomes.count("sent") == 1
    assert set(outcomes) <= {"sent", "noop", "busy"}


def test_without_a_bot_token_notifications_are_recorded_as_skipped_and_the_log_says_why(settings, caplog):
    settings.TELEGRAM_BOT_TOKEN = ""
    buyer = make_user()
    link(buyer)
    notification = reserved_notification(buyer)
    with caplog.at_level(logging.INFO, logger="notifications"):
        assert delivery.deliver(notification.pk).outcome == Status.SKIPPED
    notification.refresh_from_db()
    assert notification.status == Status.SKIPPED
    assert "TELEGRAM_BOT_TOKEN is not set" in notification.last_error
    assert "TELEGRAM_BOT_TOKEN is not set" in caplog.text


def test_a_blocked_user_marks_the_link_inactive_and_is_not_retried(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    telegram_on.block(chat.chat_id)
    notification = reserved_notification(buyer)

    result = delivery.deliver(notification.pk)
    assert (result.outcome, result.retry_in) == (Status.FAILED, None)
    notification.refresh_from_db()
    assert notification.status == Status.FAILED
    assert "blocked by the user" in notification.last_error
    chat.refresh_from_db()
    assert not chat.active
    assert "blocked" in chat.deactivated_reason
    assert delivery.deliver(notification.pk).outcome == "noop"
    assert len(telegram_on.attempts(chat.chat_id)) == 1

    # Nothing more is recorded for a chat that blocked us.
    assert notify.record_ticket_event(Notification.Kind.TICKET_RESERVED, make_ticket(buyer).code) is None


def test_a_429_is_retried_no_earlier_than_retry_after_and_blocks_the_chat(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    telegram_on.fail_next(429, retry_after=7)
    notification = reserved_notification(buyer)

    before = timezone.now()
    result = delivery.deliver(notification.pk)
    assert (result.outcome, result.retry_in) == (Status.RETRY, 7)
    notification.refresh_from_db()
    assert notification.status == Status.RETRY
    assert notification.throttled == 1
    assert "retry after 7" in notification.last_error
    assert notification.next_attempt_at >= before + datetime.timedelta(seconds=7)
    # Every worker now keeps away from that chat for as long as Telegram asked.
    assert ratelimit.acquire(chat.chat_id) > 5000

    # Run again before it is due (a duplicate task): nothing is sent, it says when to come back.
    early = delivery.deliver(notification.pk)
    assert early.outcome == Status.RETRY and 0 < early.retry_in <= 7
    assert len(telegram_on.attempts(chat.chat_id)) == 1

    # Once due (and the chat's block has lapsed), it goes out.
    later = notification.next_attempt_at + datetime.timedelta(milliseconds=1)
    lift_chat_block(chat.chat_id)
    assert delivery.deliver(notification.pk, now=later).outcome == Status.SENT
    assert len(telegram_on.sent(chat.chat_id)) == 1


def lift_chat_block(chat_id: int) -> None:
    """Stand in for time passing: the chat's rate-limit block lapses."""
    get_redis().delete(ratelimit.chat_key(chat_id))


def test_server_errors_are_retried_with_backoff_then_recorded_as_failed(telegram_on, settings):
    settings.TELEGRAM_SEND_MAX_ATTEMPTS = 3
    buyer = make_user()
    chat = link(buyer)
    telegram_on.fail_next(500, "Internal Server Error", times=10)
    notification = reserved_notification(buyer)

    delays = []
    moment = timezone.now()
    for _ in range(2):
        result = delivery.deliver(notification.pk, now=moment)
        assert result.outcome == Status.RETRY
        delays.append(result.retry_in)
        notification.refresh_from_db()
        moment = notification.next_attempt_at + datetime.timedelta(milliseconds=1)
        lift_chat_block(chat.chat_id)
    assert delays[1] > delays[0] > 0  # exponential backoff

    assert delivery.deliver(notification.pk, now=moment).outcome == Status.FAILED
    notification.refresh_from_db()
    assert notification.status == Status.FAILED
    assert notification.attempts == 3
    assert "gave up after 3 attempts" in notification.last_error
    assert "Internal Server Error" in notification.last_error
    assert len(telegram_on.attempts(chat.chat_id)) == 3


def test_a_bad_request_is_not_retried(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    telegram_on.fail_next(400, "Bad Request: chat not found")
    notification = reserved_notification(buyer)
    assert delivery.deliver(notification.pk).outcome == Status.FAILED
    notification.refresh_from_db()
    assert "chat not found" in notification.last_error
    assert len(telegram_on.attempts(chat.chat_id)) == 1
    chat.refresh_from_db()
    assert chat.active  # only a 403 says the user is gone


def abandon(notification: Notification, *, http_started: bool) -> datetime.datetime:
    """Leave the row as a worker that died holding it would: 'sending', lease lapsed."""
    now = timezone.now()
    Notification.objects.filter(pk=notification.pk).update(
        status=Status.SENDING,
        claim="6f1f6d3c-0000-4000-8000-000000000001",
        lease_until=now - datetime.timedelta(seconds=1),
        http_started_at=now - datetime.timedelta(seconds=2) if http_started else None,
        attempts=1,
    )
    return now


def test_a_row_left_by_a_worker_that_died_before_sending_is_sent_once(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    notification = reserved_notification(buyer)
    abandon(notification, http_started=False)

    assert delivery.deliver(notification.pk).outcome == Status.SENT
    assert delivery.deliver(notification.pk).outcome == "noop"
    assert len(telegram_on.sent(chat.chat_id)) == 1
    notification.refresh_from_db()
    assert notification.attempts == 2


def test_a_row_held_by_a_live_worker_is_left_alone(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    notification = reserved_notification(buyer)
    Notification.objects.filter(pk=notification.pk).update(
        status=Status.SENDING, lease_until=timezone.now() + datetime.timedelta(seconds=30)
    )
    result = delivery.deliver(notification.pk)
    assert result.outcome == "busy" and result.retry_in > 29
    assert telegram_on.attempts(chat.chat_id) == []


def test_an_uncertain_row_is_resent_with_a_note_when_so_configured(telegram_on, settings):
    settings.TELEGRAM_RESEND_UNCERTAIN = True
    buyer = make_user()
    chat = link(buyer)
    notification = reserved_notification(buyer)
    abandon(notification, http_started=True)

    assert delivery.deliver(notification.pk).outcome == Status.SENT
    notification.refresh_from_db()
    assert "a duplicate is possible" in notification.last_error
    assert len(telegram_on.sent(chat.chat_id)) == 1


def test_an_uncertain_row_is_recorded_as_failed_when_resending_is_off(telegram_on, settings):
    settings.TELEGRAM_RESEND_UNCERTAIN = False
    buyer = make_user()
    chat = link(buyer)
    notification = reserved_notification(buyer)
    abandon(notification, http_started=True)

    assert delivery.deliver(notification.pk).outcome == Status.FAILED
    notification.refresh_from_db()
    assert "may or may not have delivered it" in notification.last_error
    assert telegram_on.attempts(chat.chat_id) == []


def test_the_sweeper_finds_lost_and_abandoned_rows_but_not_fresh_ones(telegram_on):
    buyer, other, third = make_user(), make_user(), make_user()
    for user in (buyer, other, third):
        link(user)
    lost = reserved_notification(buyer)
    abandoned = reserved_notification(other)
    fresh = reserved_notification(third)
    now = timezone.now()
    Notification.objects.filter(pk=lost.pk).update(updated_at=now - datetime.timedelta(minutes=10))
    abandon(abandoned, http_started=False)

    found = delivery.due_for_sweep(timezone.now(), grace=datetime.timedelta(minutes=5))
    assert lost.pk in found
    assert abandoned.pk in found
    assert fresh.pk not in found


def test_the_sweeper_backfills_ticket_events_that_were_never_queued(telegram_on):
    buyer = make_user()
    chat = link(buyer)
    type(chat).objects.filter(pk=chat.pk).update(linked_at=timezone.now() - datetime.timedelta(hours=1))
    ticket = make_ticket(buyer)
    Ticket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=10))
    earlier = make_ticket(buyer, number=2)  # taken before the link: no message for it
    Ticket.objects.filter(pk=earlier.pk).update(created_at=timezone.now() - datetime.timedelta(hours=2))

    ids = notify.backfill_ticket_events(
        timezone.now(), grace=datetime.timedelta(minutes=5), window=datetime.timedelta(hours=6)
    )
    assert [Notification.objects.get(pk=i).object_ref for i in ids] == [ticket.code]
    again = notify.backfill_ticket_events(
        timezone.now(), grace=datetime.timedelta(minutes=5), window=datetime.timedelta(hours=6)
    )
    assert again == []


def test_the_rate_limiter_allows_one_message_per_second_per_chat():
    now = 1_700_000_000_000
    assert ratelimit.acquire(1, now_ms=now) == 0
    assert ratelimit.acquire(1, now_ms=now + 10) == 990
    assert ratelimit.acquire(2, now_ms=now + 10) == 0  # another chat is not held back
    assert ratelimit.acquire(1, now_ms=now + 1000) == 0


def test_the_rate_limiter_allows_thirty_messages_per_second_overall(settings):
    settings.TELEGRAM_RATE_PER_SECOND = 30
    now = 1_700_000_000_000
    granted = [ratelimit.acquire(chat, now_ms=now) for chat in range(100, 140)]
    assert granted.count(0) == 30
    assert all(wait > 0 for wait in granted[30:])
    # Refused callers took nothing: one emission interval later exactly one more goes.
    later = [ratelimit.acquire(chat, now_ms=now + 34) for chat in range(200, 205)]
    assert later.count(0) == 1
