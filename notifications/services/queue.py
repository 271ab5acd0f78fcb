"""Handing work to Celery after the surrounding transaction commits, never breaking the caller.

A notification is a side effect: if the broker is unreachable, the reservation or the link that caused it
still stands. The sweeper (``tasks.sweep``) finds what was recorded but never queued, and ticket events
never queued. Ticket events, the one kind a war storm produces by the thousand, go through a per-process
batching publisher (``publisher.py``); the rest are one task each.

Tasks are sent by their registered names (``notifications/tasks.py`` registers them), never through the
task objects: the services never import the tasks module, which imports the services (no import cycle),
and a web process never pays for importing it (it pulls in delivery and with it aiogram, ~2 s) on its
first reservation, in a buyer's request.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from notifications.services import publisher
from wartiket.celery import app

log = logging.getLogger(__name__)


def deliver_after_commit(notification_id: int) -> None:
    transaction.on_commit(partial(_send_task, "notifications.deliver", notification_id))


def ticket_event_after_commit(kind: str, code: str) -> None:
    # Not a publish per ticket on the request thread (~1 ms of CPU each, ~30 % of a winning war attempt):
    # the process's background publisher sends the events of the last few ms as one task
    # (services/publisher.py, which also says what a killed process loses and how the sweeper backfills it).
    transaction.on_commit(partial(publisher.put, kind, code))


def draw_result_after_commit(slot_id: int) -> None:
    transaction.on_commit(partial(_send_task, "notifications.draw_result", slot_id))


def _send_task(name: str, *args) -> None:
    try:
        app.send_task(name, args=args)
    except Exception:  # a broker outage must not fail the reservation that caused this
        log.exception("could not queue %s%s; the sweeper will pick it up", name, args)
