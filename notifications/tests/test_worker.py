"""Real Celery worker processes on the real Redis broker, sending to the fake Bot API.

Reservations go through the war API in this process; ``transaction.on_commit`` hands the event to this
process's publisher, whose thread queues it (in a batch: ``notifications.ticket_events``); the worker (a
separate OS process on the same test database) sends. Nothing here is mocked.
"""

from __future__ import annotations

import os
import signal

import pytest

from notifications import tasks
from notifications.models import Notification
from notifications.tests.conftest import celery_worker, link
from queueing.models import Ticket
from tests.factory import make_slot, make_user, token_client, war_body

pytestmark = pytest.mark.django_db(transaction=True)

Status = Notification.Status
# Fast recovery for the crash test: a dead worker's message is handed out again after 1 s, looked for
# every second, and a dead worker's claim on a notification lapses after 1 s.
FAST_RECOVERY = {
    "CELERY_VISIBILITY_TIMEOUT": "1",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
    "CELERY_UNACKED_RESTORE_THROTTLE": "1",
    "TELEGRAM_SEND_LEASE_SECONDS": "1",
}


def reserve(user, slot) -> Ticket:
    response = token_client(user).post("/api/war", war_body(slot), format="json")
    assert response.status_code == 201, response.json()
    return Ticket.objects.get(code=response.json()["ticket"]["code"])


def notification_for(ticket: Ticket, kind=Notification.Kind.TICKET_RESERVED) -> Notification | None:
    return Notification.objects.filter(kind=kind, object_ref=ticket.code).first()


def wait_for_status(fake, ticket: Ticket, status: str, kind=Notification.Kind.TICKET_RESERVED) -> Notification:
    return fake.wait_for(
        lambda: (n := notification_for(ticket, kind)) is not None and n.status == status and n, timeout=60
    )


def drain(fake, tmp_slot) -> None:
    """Queue a message for someone else and wait for it: the solo worker has handled what came before."""
    sentinel = make_user()
    chat = link(sentinel)
    reserve(sentinel, tmp_slot)
    fake.wait_for(lambda: fake.sent(chat.chat_id), timeout=60)


def test_reserving_and_cancelling_send_exactly_one_message_each(telegram_on, tmp_path):
    buyer = make_user()
    chat = link(buyer)
    slot = make_slot(quota_size=5)
    with celery_worker(telegram_on, tmp_path):
        ticket = reserve(buyer, slot)
        [reserved] = telegram_on.wait_for(lambda: telegram_on.sent(chat.chat_id), timeout=60)
        assert f"#{ticket.queue_number}" in reserved.text and ticket.code in reserved.text

        response = token_client(buyer).post(f"/api/tickets/{ticket.code}/cancel", format="json")
        assert response.status_code == 200, response.json()
        telegram_on.wait_for(lambda: len(telegram_on.sent(chat.chat_id)) == 2, timeout=60)
        assert "dibatalkan" in telegram_on.sent(chat.chat_id)[1].text

        # The same event queued again (a task run twice) sends nothing more.
        tasks.ticket_event.delay(Notification.Kind.TICKET_RESERVED.value, ticket.code)
        drain(telegram_on, make_slot(quota_size=5, label="11:00"))
    assert len(telegram_on.sent(chat.chat_id)) == 2
    assert wait_for_status(telegram_on, ticket, Status.SENT).attempts == 1


def test_a_worker_killed_mid_send_is_replaced_and_the_message_still_goes_out_exactly_once(telegram_on, tmp_path):
    buyer = make_user()
    chat = link(buyer)
    slot = make_slot(quota_size=5)
    # The first worker claims the notification, then pauses before the HTTP call (a test-only hook):
    # a SIGKILL there is a worker dying mid-send, and the pause makes the moment certain.
    with celery_worker(telegram_on, tmp_path, TELEGRAM_TEST_PAUSE_BEFORE_SEND="300", **FAST_RECOVERY) as first:
        ticket = reserve(buyer, slot)
        claimed = wait_for_status(telegram_on, ticket, Status.SENDING)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    assert telegram_on.attempts(chat.chat_id) == []
    assert claimed.attempts == 1

    # A new worker gets the unacknowledged task back from the broker, takes over the lapsed claim, sends.
    with celery_worker(telegram_on, tmp_path, **FAST_RECOVERY):
        telegram_on.wait_for(lambda: telegram_on.sent(chat.chat_id), timeout=60)
        sent = wait_for_status(telegram_on, ticket, Status.SENT)
        # Whatever else is still in flight for it (the sweeper, a duplicate) sends nothing more.
        tasks.deliver_notification.delay(sent.pk)
        drain(telegram_on, make_slot(quota_size=5, label="11:00"))
    assert len(telegram_on.sent(chat.chat_id)) == 1
    assert sent.attempts == 2


def test_a_429_is_retried_after_retry_after(telegram_on, tmp_path):
    buyer = make_user()
    chat = link(buyer)
    telegram_on.fail_next(429, retry_after=2, chat_id=chat.chat_id)
    with celery_worker(telegram_on, tmp_path):
        ticket = reserve(buyer, make_slot(quota_size=5))
        telegram_on.wait_for(lambda: telegram_on.sent(chat.chat_id), timeout=60)
        sent = wait_for_status(telegram_on, ticket, Status.SENT)
    refused, accepted = telegram_on.attempts(chat.chat_id)
    assert (refused.status, accepted.status) == (429, 200)
    # Telegram said "not before 2 s": the retry honoured it (a lower bound, not a speed claim).
    assert accepted.at - refused.at >= 1.9
    assert (sent.attempts, sent.throttled) == (2, 1)


def test_a_user_who_blocked_the_bot_is_not_retried(telegram_on, tmp_path):
    buyer = make_user()
    chat = link(buyer)
    telegram_on.block(chat.chat_id)
    with celery_worker(telegram_on, tmp_path):
        ticket = reserve(buyer, make_slot(quota_size=5))
        failed = wait_for_status(telegram_on, ticket, Status.FAILED)
        drain(telegram_on, make_slot(quota_size=5, label="11:00"))
    assert "blocked by the user" in failed.last_error
    assert len(telegram_on.attempts(chat.chat_id)) == 1
    chat.refresh_from_db()
    assert not chat.active
