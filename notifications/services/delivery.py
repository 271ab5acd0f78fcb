"""Sending one notification: at most once per event, and at least once while Telegram can be reached.

A row moves only through state-conditional UPDATEs, so whoever runs ``deliver`` — a task redelivered
by the broker, a retry, the sweeper, two workers at once — at most one of them holds it:

    pending/retry ──claim──▶ sending ──▶ sent | retry | failed | skipped
                               │
                               └─ lease lapsed (the worker died) ──claim again──▶ sending

The claim stamps a fresh ``claim`` id and a lease. Just before the HTTP call the holder re-checks
that it still owns the row while stamping ``http_started_at``; a worker that stalled past its lease and
lost the row to another therefore never sends. A dead worker's row with ``http_started_at`` still empty
certainly never reached Telegram and is resent. The one window left is a worker dying after Telegram
accepted the message and before ``sent`` is committed: Telegram has no idempotency key, so whether that
message arrived is unknown. ``TELEGRAM_RESEND_UNCERTAIN`` picks the side: resend (default; a duplicate
is possible) or record it as failed for staff to look at (a loss is possible). docs/telegram.md.
"""

from __future__ import annotations

import datetime
import logging
import random
import time
import uuid
from dataclasses import dataclass

from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
)
from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, Q
from django.utils import timezone

from notifications.models import Notification, TelegramLink
from notifications.services import linking, messages, ratelimit, telegram

log = logging.getLogger(__name__)

Status = Notification.Status

# Telegram said no in a way that the same request can never turn into a yes.
PERMANENT_ERRORS = (TelegramBadRequest, TelegramNotFound, TelegramMigrateToChat, TelegramEntityTooLarge)
# Waits for our own rate limiter up to this long happen inside the task; longer ones go back to the queue.
MAX_INLINE_WAIT_MS = 1500
BACKOFF_BASE_SECONDS = 5
# Below the broker's default visibility_timeout (300 s): a Redis-broker countdown longer than that is
# handed out a second time (harmless here, but wasteful).
BACKOFF_CAP_SECONDS = 240
DISABLED_REASON = "TELEGRAM_BOT_TOKEN is not set: Telegram notifications are off"
UNCERTAIN = "the worker sending this died during the HTTP call; Telegram may or may not have delivered it"


@dataclass(frozen=True)
class Delivery:
    outcome: str  # sent, skipped, failed, retry, busy (another worker holds it), noop (nothing to do)
    retry_in: float | None = None  # seconds until the task should run again, when it should


def backoff_seconds(errors: int) -> float:
    base = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, errors - 1))
    # Jitter: rows that failed together in an outage don't all come back in the same second.
    return base * random.uniform(0.9, 1.1)


def deliver(notification_id: int, *, now: datetime.datetime | None = None) -> Delivery:
    now = now or timezone.now()
    if not telegram.enabled():
        return _skip_without_token(notification_id)

    claim = _claim(notification_id, now)
    if isinstance(claim, Delivery):
        return claim

    notification = Notification.objects.select_related("user").get(pk=notification_id)
    link = TelegramLink.objects.filter(user_id=notification.user_id).first()
    if link is None or not link.active:
        return _finish(notification_id, claim, Status.SKIPPED, "the user has no active Telegram link")
    try:
        text = messages.render(notification, link.language, now=now)
    except messages.Gone as exc:
        return _finish(notification_id, claim, Status.SKIPPED, str(exc))

    wait_ms = _wait_for_send_slot(link.chat_id)
    if wait_ms:
        # Our own limiter said "later": not an attempt, and not an error.
        _release(notification_id, claim, now + datetime.timedelta(milliseconds=wait_ms), attempts=F("attempts") - 1)
        return Delivery(Status.RETRY, retry_in=wait_ms / 1000)

    _test_pause()
    # Still ours? A worker that stalled past its lease may have lost the row to another one: then it
    # must not send. From here on, a crash leaves the row "uncertain" (see the module docstring).
    started = Notification.objects.filter(pk=notification_id, claim=claim, status=Status.SENDING).update(
        http_started_at=timezone.now(), chat_id=link.chat_id
    )
    if not started:
        log.warning("notification %s: lost its claim before sending; another worker has it", notification_id)
        return Delivery("noop")
    return _send(notification, claim, link, text)


def _skip_without_token(notification_id: int) -> Delivery:
    skipped = Notification.objects.filter(pk=notification_id, status__in=Notification.CLAIMABLE).update(
        status=Status.SKIPPED, last_error=DISABLED_REASON, next_attempt_at=None
    )
    if skipped:
        log.info("notification %s recorded as skipped: %s", notification_id, DISABLED_REASON)
        return Delivery(Status.SKIPPED)
    return Delivery("noop")


def _claim(notification_id: int, now: datetime.datetime) -> uuid.UUID | Delivery:
    row = (
        Notification.objects.filter(pk=notification_id)
        .values("status", "next_attempt_at", "lease_until", "http_started_at", "claim")
        .first()
    )
    if row is None or row["status"] in Notification.FINAL:
        return Delivery("noop")
    status = row["status"]
    if status in Notification.CLAIMABLE and row["next_attempt_at"] and row["next_attempt_at"] > now:
        # Early: a duplicate of a scheduled retry. Come back when it is due; only one run will claim it.
        return Delivery(status, retry_in=(row["next_attempt_at"] - now).total_seconds())
    note = None
    if status == Status.SENDING:
        if row["lease_until"] and row["lease_until"] > now:
            # Alive and sending (or a redelivered copy of its own task): look again after its lease.
            return Delivery("busy", retry_in=(row["lease_until"] - now).total_seconds() + 1)
        if row["http_started_at"] is not None:
            if not settings.TELEGRAM_RESEND_UNCERTAIN:
                return _give_up_uncertain(notification_id, row["claim"])
            note = f"resent: {UNCERTAIN}; a duplicate is possible"
            log.warning("notification %s: %s; resending", notification_id, UNCERTAIN)
        else:
            log.warning("notification %s: its worker died before sending; sending again", notification_id)

    claim = uuid.uuid4()
    updates = {
        "status": Status.SENDING,
        "claim": claim,
        "lease_until": now + datetime.timedelta(seconds=settings.TELEGRAM_SEND_LEASE_SECONDS),
        "http_started_at": None,
        "attempts": F("attempts") + 1,
        "updated_at": now,
    }
    if note:
        updates["last_error"] = note
    # Optimistic: only if the row is still exactly as we read it. Of two deliverers racing here,
    # PostgreSQL re-checks the WHERE for the second after the first commits, and it matches nothing.
    claimed = Notification.objects.filter(pk=notification_id, status=status, claim=row["claim"]).update(**updates)
    if not claimed:
        return Delivery("noop")
    return claim


def _give_up_uncertain(notification_id: int, old_claim) -> Delivery:
    failed = Notification.objects.filter(pk=notification_id, status=Status.SENDING, claim=old_claim).update(
        status=Status.FAILED, claim=None, lease_until=None, last_error=f"{UNCERTAIN}; not resent"
    )
    if failed:
        log.error("notification %s: %s; recorded as failed, not resent", notification_id, UNCERTAIN)
        return Delivery(Status.FAILED)
    return Delivery("noop")


def _wait_for_send_slot(chat_id: int) -> int:
    while True:
        wait_ms = ratelimit.acquire(chat_id)
        if wait_ms == 0 or wait_ms > MAX_INLINE_WAIT_MS:
            return wait_ms
        time.sleep(wait_ms / 1000)


def _test_pause() -> None:
    if settings.TESTING and settings.TELEGRAM_TEST_PAUSE_BEFORE_SEND > 0:
        log.warning("test pause: %ss before sending", settings.TELEGRAM_TEST_PAUSE_BEFORE_SEND)
        time.sleep(settings.TELEGRAM_TEST_PAUSE_BEFORE_SEND)


def _send(notification: Notification, claim: uuid.UUID, link: TelegramLink, text: str) -> Delivery:
    nid = notification.pk
    try:
        message_id = telegram.send_message(link.chat_id, text)
    except TelegramRetryAfter as exc:
        ratelimit.block_chat(link.chat_id, exc.retry_after)
        due = timezone.now() + datetime.timedelta(seconds=exc.retry_after)
        _release(nid, claim, due, error=f"429 Too Many Requests: retry after {exc.retry_after}s", throttled=True)
        log.info("notification %s: Telegram asked to retry after %ss", nid, exc.retry_after)
        return Delivery(Status.RETRY, retry_in=exc.retry_after)
    except TelegramForbiddenError as exc:
        # "bot was blocked by the user" (or the account is gone): no retry can help until they come back.
        linking.deactivate(link.chat_id, exc.message)
        return _finish(nid, claim, Status.FAILED, f"403 {exc.message}")
    except PERMANENT_ERRORS as exc:
        return _finish(nid, claim, Status.FAILED, f"{type(exc).__name__}: {exc.message}")
    except Exception as exc:  # network, 5xx, a bug: all worth a retry, all recorded
        return _retry_or_give_up(nid, claim, f"{type(exc).__name__}: {exc}")
    _record_sent(nid, message_id)
    return Delivery(Status.SENT)


def _record_sent(notification_id: int, message_id: int) -> None:
    # Telegram has the message: recording it is all that stands between us and a resend, so ride out a
    # short database blip rather than leave the row looking uncertain.
    for attempt in range(5):
        try:
            recorded = Notification.objects.filter(pk=notification_id, status=Status.SENDING).update(
                status=Status.SENT,
                sent_at=timezone.now(),
                telegram_message_id=message_id,
                claim=None,
                lease_until=None,
                next_attempt_at=None,
            )
        except DatabaseError:
            if attempt == 4:
                log.exception("notification %s was sent but could not be recorded as sent", notification_id)
                raise
            time.sleep(0.5 * (attempt + 1))
            continue
        if not recorded:
            log.warning("notification %s: sent, but the row was no longer 'sending'", notification_id)
        return


def _release(
    notification_id: int,
    claim: uuid.UUID,
    due: datetime.datetime,
    *,
    error: str | None = None,
    throttled: bool = False,
    attempts=None,
) -> None:
    updates = {"status": Status.RETRY, "claim": None, "lease_until": None, "next_attempt_at": due}
    if error is not None:
        updates["last_error"] = error
    if throttled:
        updates["throttled"] = F("throttled") + 1
    if attempts is not None:
        updates["attempts"] = attempts
    Notification.objects.filter(pk=notification_id, claim=claim, status=Status.SENDING).update(**updates)


def _retry_or_give_up(notification_id: int, claim: uuid.UUID, error: str) -> Delivery:
    row = Notification.objects.filter(pk=notification_id).values("attempts", "throttled").first()
    errors = row["attempts"] - row["throttled"]
    if errors >= settings.TELEGRAM_SEND_MAX_ATTEMPTS:
        log.error("notification %s: giving up after %s failed attempts: %s", notification_id, errors, error)
        return _finish(notification_id, claim, Status.FAILED, f"gave up after {errors} attempts: {error}")
    delay = backoff_seconds(errors)
    log.warning("notification %s: attempt %s failed (%s); retrying in %.0fs", notification_id, errors, error, delay)
    _release(notification_id, claim, timezone.now() + datetime.timedelta(seconds=delay), error=error)
    return Delivery(Status.RETRY, retry_in=delay)


def _finish(notification_id: int, claim: uuid.UUID, status: str, reason: str) -> Delivery:
    Notification.objects.filter(pk=notification_id, claim=claim, status=Status.SENDING).update(
        status=status, claim=None, lease_until=None, next_attempt_at=None, last_error=reason
    )
    level = logging.INFO if status == Status.SKIPPED else logging.WARNING
    log.log(level, "notification %s %s: %s", notification_id, status, reason)
    return Delivery(status)


def due_for_sweep(now: datetime.datetime, *, grace: datetime.timedelta, limit: int = 500) -> list[int]:
    """Rows whose task was lost: overdue by ``grace``, or held by a worker whose lease lapsed."""
    overdue = Q(status__in=Notification.CLAIMABLE) & (
        Q(next_attempt_at__lt=now - grace) | Q(next_attempt_at__isnull=True, updated_at__lt=now - grace)
    )
    abandoned = Q(status=Status.SENDING, lease_until__lt=now)
    return list(Notification.objects.filter(overdue | abandoned).order_by("pk").values_list("pk", flat=True)[:limit])
