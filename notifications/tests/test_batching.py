"""Ticket events leave a web process in batches (services/publisher.py): far fewer broker publishes than
tickets, still exactly one notification per ticket, nothing lost that the sweeper does not backfill, and
a forked child never publishes (or loses) its parent's queue.

The broker is the suite's real Redis database: a published task is a message in the ``celery`` list.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from notifications import tasks
from notifications.models import Notification, TelegramLink
from notifications.services import publisher
from notifications.tests.conftest import celery_worker, link
from queueing.models import Ticket
from tests.factory import make_slot, make_user, token_client, war_body
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db(transaction=True)

RESERVED = Notification.Kind.TICKET_RESERVED.value
REPO = Path(__file__).resolve().parents[2]


def queued() -> list[tuple[str, list]]:
    """The tasks waiting on the broker, oldest first: (task name, args)."""
    messages = []
    for raw in reversed(get_redis().lrange("celery", 0, -1)):  # kombu LPUSHes, workers take from the right
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        messages.append((message["headers"]["task"], args))
    return messages


def batched_codes() -> list[str]:
    return [code for name, args in queued() if name == publisher.TASK for _kind, code in args[0]]


def reserve(user, slot) -> str:
    response = token_client(user).post("/api/war", war_body(slot), format="json")
    assert response.status_code == 201, response.json()
    return response.json()["ticket"]["code"]


@pytest.fixture
def slow_batches(monkeypatch):
    """A batch window far longer than the test's requests, so how many batches there are is certain."""
    monkeypatch.setattr(publisher, "BATCH_WINDOW_S", 30.0)


def test_n_reservations_are_published_as_one_batch_and_each_ticket_is_notified_once(slow_batches):
    slot = make_slot(quota_size=40)
    buyers = [make_user() for _ in range(40)]
    for buyer in buyers:
        link(buyer)
    codes = [reserve(buyer, slot) for buyer in buyers]
    assert publisher.flush()  # what atexit does; here it also ends the window at once

    # 40 tickets, one publish (the window was still open when flush() cut it short).
    assert [name for name, _args in queued()] == [publisher.TASK]
    assert Counter(batched_codes()) == Counter(codes)  # every ticket once, and only these
    assert all(kind == RESERVED for _name, args in queued() for kind, _code in args[0])

    # What the worker does with the batch, twice (a worker lost before its ack): one row per ticket.
    [(_name, args)] = queued()
    get_redis().delete("celery")
    assert tasks.ticket_events(*args) == 40
    assert tasks.ticket_events(*args) == 40  # the same rows again: their claims send nothing twice
    rows = Notification.objects.filter(kind=RESERVED)
    assert sorted(rows.values_list("object_ref", flat=True)) == sorted(codes)
    # One delivery task per notification: the batch's sends are spread over the workers.
    assert Counter(name for name, _args in queued()) == {"notifications.deliver": 80}
    assert set(args[0] for _name, args in queued()) == set(rows.values_list("pk", flat=True))


def test_a_batch_never_holds_more_than_batch_max(slow_batches, monkeypatch):
    monkeypatch.setattr(publisher, "BATCH_MAX", 7)
    slot = make_slot(quota_size=20)
    codes = [reserve(make_user(), slot) for _ in range(20)]
    assert publisher.flush()
    # Two full batches published as soon as they filled up (the window was 30 s), the rest by flush().
    assert [len(args[0]) for name, args in queued() if name == publisher.TASK] == [7, 7, 6]
    assert Counter(batched_codes()) == Counter(codes)


def test_reservations_and_cancellations_reach_telegram_exactly_once_each_through_a_real_worker(telegram_on, tmp_path):
    slot = make_slot(quota_size=12)
    buyers = [make_user() for _ in range(12)]
    chats = [link(buyer).chat_id for buyer in buyers]
    with celery_worker(telegram_on, tmp_path):
        codes = [reserve(buyer, slot) for buyer in buyers]
        cancelled = codes[0]
        assert token_client(buyers[0]).post(f"/api/tickets/{cancelled}/cancel", format="json").status_code == 200
        telegram_on.wait_for(lambda: all(telegram_on.sent(chat) for chat in chats[1:]), timeout=60)
        telegram_on.wait_for(lambda: len(telegram_on.sent(chats[0])) == 2, timeout=60)
        # Nothing more is on its way: the queue is empty and every row is sent.
        telegram_on.wait_for(
            lambda: (
                not get_redis().llen("celery")
                and Notification.objects.exclude(status=Notification.Status.SENT).count() == 0
            ),
            timeout=60,
        )
    for chat, code in zip(chats, codes, strict=True):
        texts = [call.text for call in telegram_on.sent(chat)]
        assert code in texts[0]
        assert len(texts) == (2 if code == cancelled else 1), texts
    assert Notification.objects.count() == 13


def test_a_broker_that_fails_never_reaches_the_request_and_the_sweeper_backfills_the_lost_events(monkeypatch):
    def broker_down(name, args):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(publisher, "_send", broker_down)
    published = publisher.publisher().published
    buyer = make_user()
    TelegramLink.objects.filter(pk=link(buyer).pk).update(linked_at=timezone.now() - datetime.timedelta(hours=1))
    code = reserve(buyer, make_slot(quota_size=3))  # 201: the request never saw the broker
    assert publisher.flush()  # the batch was tried, and dropped: nothing is left waiting
    assert publisher.publisher().published == published
    assert queued() == []
    assert not Notification.objects.exists()

    monkeypatch.undo()
    Ticket.objects.filter(code=code).update(created_at=timezone.now() - datetime.timedelta(minutes=10))
    assert tasks.sweep() == 1
    assert Notification.objects.get().object_ref == code
    assert [name for name, _args in queued()] == ["notifications.deliver"]


def test_a_process_killed_with_events_queued_loses_only_what_the_sweeper_backfills(slow_batches):
    """A SIGKILLed web process: its ticket committed, its event still in the queue. The sweeper finds it."""
    buyer = make_user()
    TelegramLink.objects.filter(pk=link(buyer).pk).update(linked_at=timezone.now() - datetime.timedelta(hours=1))
    slot = make_slot(quota_size=3)
    connections.close_all()  # the child opens its own database connection
    pid = os.fork()
    if pid == 0:  # the web process: reserve, then die before the 30 s window publishes the event
        ok = False
        try:
            code = reserve(buyer, slot)
            ok = publisher.publisher().pending() == 1 and Ticket.objects.filter(code=code).exists()
        finally:
            os.kill(os.getpid(), signal.SIGKILL if ok else signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    ticket = Ticket.objects.get(user=buyer)
    assert queued() == []  # the event died with the process
    assert not Notification.objects.exists()

    # The sweeper leaves the last 5 minutes to tasks still in the queue; past them, it backfills.
    assert tasks.sweep() == 0
    Ticket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=10))
    assert tasks.sweep() == 1
    assert Notification.objects.get().object_ref == ticket.code


def test_a_forked_child_starts_its_own_queue_and_never_publishes_its_parents(slow_batches):
    parent = publisher.publisher()
    for n in range(3):
        publisher.put(RESERVED, f"PARENT-{n}")
    assert parent.pending() == 3 and parent.thread.is_alive()  # a half-full batch, waiting for its window

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child = publisher.publisher()
            fresh = child is not parent and child.pid == os.getpid() and child.pending() == 0
            publisher.put(RESERVED, "CHILD-0")  # starts the child's own thread
            if fresh and child.thread is not None and child.thread.is_alive() and publisher.flush(10):
                code = 0 if child.published == 1 else 2
        finally:
            os._exit(code)  # no pytest teardown, no atexit in the child
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status

    # The child published its own event alone; the parent's three are still the parent's to publish.
    assert queued() == [(publisher.TASK, [[[RESERVED, "CHILD-0"]]])]
    assert parent.pending() == 3
    assert publisher.flush()
    assert Counter(batched_codes()) == Counter(["CHILD-0", "PARENT-0", "PARENT-1", "PARENT-2"])


PROBE = """
import django
django.setup()
from notifications.services import publisher
publisher.BATCH_WINDOW_S = 60.0  # nothing is published before the process exits
for n in range(5):
    publisher.put("ticket_reserved", f"EXIT-{n}")
assert publisher.publisher().pending() == 5
"""


def test_a_process_that_exits_normally_publishes_what_it_had_queued():
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="wartiket.settings", REDIS_URL=settings.REDIS_URL)
    env["CELERY_BROKER_URL"] = settings.REDIS_URL  # this suite's Redis database
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30  # atexit cut the 60 s window short
    assert queued() == [(publisher.TASK, [[[RESERVED, f"EXIT-{n}"] for n in range(5)]])]


WORKER_PROBE = """
import multiprocessing
import django
django.setup()
from notifications.services import publisher
publisher.BATCH_WINDOW_S = 60.0


def worker():  # what a granian web worker is: a forked multiprocessing child, which ends with os._exit()
    for n in range(3):
        publisher.put("ticket_reserved", f"WORKER-{n}")


child = multiprocessing.get_context("fork").Process(target=worker)
child.start()
child.join(30)
assert child.exitcode == 0
"""


def test_a_web_worker_that_stops_normally_publishes_what_it_had_queued():
    """A multiprocessing child skips atexit: its exit finalizer publishes its queue instead."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="wartiket.settings", REDIS_URL=settings.REDIS_URL)
    env["CELERY_BROKER_URL"] = settings.REDIS_URL
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    assert queued() == [(publisher.TASK, [[[RESERVED, f"WORKER-{n}"] for n in range(3)]])]


def test_a_batch_costs_one_query_for_its_buyers_without_telegram_and_a_row_for_each_linked_one(
    django_assert_num_queries,
):
    """The worker records a war's batch (mostly buyers without Telegram) with one lookup, not two per ticket."""
    from notifications.services import notify

    slot = make_slot(quota_size=30)
    unlinked = [reserve(make_user(), slot) for _ in range(20)]
    buyer = make_user()
    link(buyer)
    linked = reserve(buyer, slot)
    with django_assert_num_queries(1):
        assert notify.record_ticket_events([[RESERVED, code] for code in unlinked]) == [None] * 20
    ids = notify.record_ticket_events([[RESERVED, unlinked[0]], [RESERVED, linked], [RESERVED, linked]])
    assert ids[0] is None and ids[1] == ids[2] is not None  # the linked buyer's, once however often asked
    assert Notification.objects.get(pk=ids[1]).object_ref == linked
