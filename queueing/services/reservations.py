"""Reserving and cancelling queue numbers: Redis decides, PostgreSQL makes it durable.

The order of events for one buyer:
1. reserve.lua (one round trip) checks clock, holder, day rule and quota, then assigns a number and
   journals it;
2. the Ticket row is committed in PostgreSQL;
3. only then is the buyer told 201, and the Redis holder is marked committed.
If step 2 fails, step 1 is undone (release.lua) and the buyer gets 503. If the process dies between 1
and 2, the journal and the uncommitted holder mark survive: the buyer's retry or
``reconcile --repair`` writes the row. Nothing acknowledged is lost; nothing is written twice.

PostgreSQL's constraints are the last word when Redis is wrong (restarted from an old dump, say): a
second ticket for one person on one day, or a number another ticket holds, is refused by the INSERT,
and the answer is then what PostgreSQL knows (one_per_day, already_reserved), never a 201.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import signal
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.services import challenge
from queueing.models import Ticket, new_ticket_code
from queueing.services import bypass, catalog, clock, draws, events, heal, store
from queueing.services.catalog import SlotRef
from queueing.services.errors import ReservationError
from queueing.services.store import (
    datetime_to_ms,
    ms_to_datetime,
    rate_limit_args,
    reserve_keys,
    script,
    slot_keys,
)
from wartiket.outages import REDIS_OUTAGES
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)

# Unique constraints of queueing.Ticket, by what their violation means for the attempt.
PERSON_DAY = ("ticket_one_holding_per_person_day", "ticket_one_holding_per_user_day")
SAME_SLOT = ("ticket_one_holding_per_person_slot", "ticket_one_holding_per_user_slot")
NUMBER_TAKEN = "ticket_unique_holding_number"
# How long past a draw slot's draw time an attempt still asks enter.lua first (which answers "after" and
# leaves the decision to reserve.lua): covers the error of this process' estimate of Redis' clock.
ENTRY_SCRIPT_MARGIN_MS = 2000


@dataclass(frozen=True)
class Reservation:
    created: bool
    slot: SlotRef
    queue_number: int
    code: str
    reserved_at_ms: int
    remaining: int

    @property
    def reserved_at(self):
        return ms_to_datetime(self.reserved_at_ms)

    @property
    def outcome(self) -> str:
        return "reserved" if self.created else "already_reserved"

    def body(self) -> dict:
        """The war API's answer for this outcome (every war result has one, so the view needs no branch)."""
        return {"code": self.outcome, "ticket": self.ticket_json(), "remaining": self.remaining}

    def ticket_json(self) -> dict:
        return {
            "code": self.code,
            "queue_number": self.queue_number,
            "location": self.slot.location,
            "location_name": self.slot.location_name,
            "date": self.slot.date,
            "time_slot": self.slot.time_label,
            "reserved_at": self.reserved_at.isoformat(),
        }


def _retry_after_ms(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def reserve(
    principal,
    location: str,
    time_label: str,
    date=None,
    *,
    client_ip: str = "",
    bypass_key: str | None = None,
    proof: str | None = None,
    fault: str | None = None,
) -> Reservation:
    """Try to take one queue number for ``principal``; raise ``ReservationError`` if refused.

    ``proof``: the X-Altcha header, a solved challenge, for slots whose ``challenge`` is on or hot.
    """
    if settings.WAR_REQUIRE_NIK and not principal.has_nik:
        raise ReservationError("nik_required")
    try:
        try:
            ref = catalog.resolve(location, time_label, date)
        except ReservationError as exc:
            if exc.code == "not_ready":
                heal.kick()  # the catalog is gone with Redis' state: rebuild both from PostgreSQL
            raise
        # Verified here (HMACs, no I/O); reserve.lua spends it once, in the same round trip as the rest.
        pow_proof = challenge.check_war(ref, proof)
        token = bypass.check(bypass_key, ref.id) if bypass_key and settings.WAR_BYPASS_ENABLED else None
        if settings.WAR_UNSAFE_TEST_PATH:
            return _reserve_unsafe(principal, ref)
        # A draw slot's entry window takes entries (enter.lua); from its draw time on, reserve.lua decides.
        # Once the draw is surely past (by this process' estimate of Redis' clock), skip the entry script:
        # after the draw an attempt on a draw slot costs one round trip, as on any slot.
        entering = ref.is_draw and clock.estimated_now_ms() < ref.draw_ms + ENTRY_SCRIPT_MARGIN_MS
        reply = draws.enter(principal, ref, client_ip, token, pow_proof) if entering else None
        reply = reply or script("reserve")(
            keys=reserve_keys(ref.id, ref.day, principal.id, client_ip or "-", pow_proof and pow_proof.key),
            args=[
                principal.id,
                new_ticket_code(),
                ref.id,
                1 if token else 0,
                1 if settings.WAR_ONE_PER_DAY else 0,
                *rate_limit_args(),
                principal.person_key,
                settings.WAR_JOURNAL_MAXLEN,
                pow_proof.ttl_ms if pow_proof else 0,
            ],
        )
    except REDIS_OUTAGES as exc:
        log.warning("reserve: Redis unavailable: %s", exc)
        raise ReservationError("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS) from exc

    outcome, now_ms = reply[0], int(reply[1])
    clock.observe(now_ms)
    if outcome == "not_ready":
        # Redis lost this slot (restart, flush) or an edit is pending: rebuild from PostgreSQL, once.
        heal.kick()
    if token is not None:
        bypass.record_use(token, principal.id, ref.id, outcome, now_ms)
    if outcome == "entered":
        return draws.record_entry(principal, ref, now_ms, client_ip)
    if ref.is_draw or outcome == "not_drawn":
        draws.refusal_after_draw(principal, ref, outcome, reply, now_ms)

    if outcome == "reserved":
        number, code, remaining = int(reply[2]), reply[3], int(reply[4])
        return _commit(principal, ref, number, code, now_ms, remaining, fault)
    if outcome == "already_reserved":
        number, code, reserved_ms, committed, _person = reply[2].split("|")
        if committed != "1":
            restored = _ensure_row(principal, ref, int(number), code, int(reserved_ms))
            if restored is not None:
                return restored
        return Reservation(False, ref, int(number), code, int(reserved_ms), int(reply[3]))
    refusal = _refusal(outcome, reply, now_ms, ref)
    refusal.counted = True  # reserve.lua counted it in the slot's war-room stats
    raise refusal


def _refusal(outcome: str, reply: list, now_ms: int, ref: SlotRef) -> ReservationError:
    server_time = ms_to_datetime(now_ms).isoformat()
    if outcome == "too_early":
        opens_ms = int(reply[2])
        return ReservationError(
            "too_early",
            retry_after=_retry_after_ms(opens_ms - now_ms),
            opens_at=ms_to_datetime(opens_ms).isoformat(),
            server_time=server_time,
        )
    if outcome == "closed":
        return ReservationError("closed", closed_at=ms_to_datetime(int(reply[2])).isoformat(), server_time=server_time)
    if outcome == "rate_limited":
        return ReservationError("rate_limited", retry_after=_retry_after_ms(int(reply[2])))
    if outcome == "one_per_day":
        other_slot, other_code = reply[2].split("|", 1)
        other = catalog.by_id(int(other_slot))
        ticket = {"code": other_code, "slot_id": int(other_slot)}
        if other:
            ticket.update(location=other.location, date=other.date, time_slot=other.time_label)
        return ReservationError("one_per_day", ticket=ticket)
    if outcome == "sold_out":
        return ReservationError("sold_out", remaining=0)
    if outcome == "not_ready":
        return ReservationError("not_ready", retry_after=settings.WAR_RETRY_AFTER_SECONDS)
    if outcome == "challenge_invalid":
        return ReservationError("challenge_invalid")  # the proof was spent before: a replay
    log.error("reserve: slot %s refused with %r: Redis state needs `reconcile`", ref.id, outcome)
    return ReservationError("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS)


def _new_ticket(principal, ref: SlotRef, number: int, code: str, reserved_ms: int) -> Ticket:
    return Ticket(
        slot_id=ref.id,
        user_id=principal.id,
        person=principal.person_key,
        war_day=ref.date,
        one_per_day=settings.WAR_ONE_PER_DAY,
        queue_number=number,
        code=code,
        reserved_at=ms_to_datetime(reserved_ms),
    )


# What ``_new_ticket(...).save(force_insert=True)`` writes, as one statement: the ORM's per-row work (model
# init, pre_save, field preparation, RETURNING the id nobody reads) was about a third of a winning attempt's
# CPU. Every column of the table but the id, which the sequence gives: status and cancelled_at take the
# values a new ticket gets from the model, created_at the app's clock as ``auto_now_add`` would (tests
# compare a row written here with one saved through the ORM, field by field, and that this covers every
# column). Through Django's cursor, so errors are Django's (IntegrityError with the psycopg error, and its
# constraint name, as ``__cause__``) and queries are counted like any other.
TICKET_INSERT_COLUMNS = (
    "slot_id",
    "user_id",
    "queue_number",
    "code",
    "status",
    "person",
    "war_day",
    "one_per_day",
    "reserved_at",
    "created_at",
    "cancelled_at",
)
_PLACEHOLDERS = ", ".join(["%s"] * len(TICKET_INSERT_COLUMNS))
TICKET_INSERT = f"INSERT INTO queueing_ticket ({', '.join(TICKET_INSERT_COLUMNS)}) VALUES ({_PLACEHOLDERS})"  # noqa: S608 (constants only)


def _insert_ticket(principal, ref: SlotRef, number: int, code: str, reserved_ms: int) -> None:
    """INSERT the new ticket (autocommit: committed when this returns), with what ``_new_ticket`` would save.

    The values in ``TICKET_INSERT_COLUMNS`` order."""
    with connection.cursor() as cursor:
        cursor.execute(
            TICKET_INSERT,
            (
                ref.id,
                principal.id,
                number,
                code,
                Ticket.Status.ACTIVE.value,
                principal.person_key,
                datetime.date.fromisoformat(ref.date),  # the catalog's ISO date, as DateField would send it
                settings.WAR_ONE_PER_DAY,
                ms_to_datetime(reserved_ms),
                timezone.now(),
                None,
            ),
        )


def _commit(
    principal, ref: SlotRef, number: int, code: str, now_ms: int, remaining: int, fault: str | None
) -> Reservation:
    user_id = principal.id
    fault = fault if settings.WAR_FAULT_INJECTION else None
    if fault == "kill-after-reserve":
        # Test-only: die exactly where a crash hurts most, between Redis and PostgreSQL.
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        # A connection that cannot even be opened has certainly written nothing: release at once.
        connection.ensure_connection()
    except DatabaseError as exc:
        _undo(principal, ref, code)
        raise _db_refusal(exc, user_id, ref) from exc
    try:
        # Autocommit: when the INSERT returns, the row is committed. Only then may the buyer hear 201.
        if fault != "reply-lost-before-insert":
            _insert_ticket(principal, ref, number, code, now_ms)
        if fault:
            raise OperationalError(f"test fault {fault}: the connection dropped before PostgreSQL's reply")
    except IntegrityError as exc:
        # There's a possible race: the buyer's retry arrived while this attempt was between Redis and
        # PostgreSQL, saw the uncommitted holder and wrote this very ticket (_ensure_row). The row exists,
        # so the reservation is durable: releasing its seat now would leave a ticket Redis no longer holds.
        if not Ticket.objects.filter(code=code).exists():
            return _refused_by_postgres(exc, principal, ref, number, code)
        _confirm(user_id, ref, code)
        return Reservation(True, ref, number, code, now_ms, remaining)
    except DatabaseError as exc:
        # The statement was sent; whether it committed is unknown (a reply lost with the connection).
        written = _written_after_all(code, fault)
        if written is None:
            # Neither answer is safe to act on: releasing could hand a committed ticket's number to
            # someone else, and 201 could announce a row that does not exist. Keep the seat held and
            # uncommitted, exactly as after a crash at this point: the buyer's retry or
            # `reconcile --repair` settles it once PostgreSQL answers again.
            log.error("reserve: ticket %s may or may not be in PostgreSQL (%s); held for retry/reconcile", code, exc)
            raise ReservationError("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS) from exc
        if not written:
            _undo(principal, ref, code)
            raise _db_refusal(exc, user_id, ref) from exc
        log.warning("reserve: ticket %s was committed although its reply was lost", code)
    _confirm(user_id, ref, code)
    events.ticket_reserved(code)
    return Reservation(True, ref, number, code, now_ms, remaining)


def _written_after_all(code: str, fault: str | None) -> bool | None:
    """After a failed write: is the ticket in PostgreSQL? None when PostgreSQL cannot be asked."""
    try:
        connection.close()  # the failed one may be half-broken; ask on a fresh connection
        if fault == "reply-lost-database-gone":
            raise OperationalError("test fault: PostgreSQL unreachable")
        return Ticket.objects.filter(code=code).exists()
    except DatabaseError:
        return None


def _db_refusal(exc: DatabaseError, user_id: int, ref: SlotRef) -> ReservationError:
    constraint = _constraint(exc)
    if isinstance(exc, IntegrityError) and constraint == "ticket_number_within_quota":
        # Redis believed in more seats than PostgreSQL's quota: PostgreSQL wins, the buyer hears sold out.
        log.error("reserve: slot %s: Redis issued a number above the quota; run `reconcile`", ref.id)
        return ReservationError("sold_out", remaining=0)
    log.error("reserve: slot %s user %s: PostgreSQL refused the ticket (%s): %s", ref.id, user_id, constraint, exc)
    return ReservationError("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS)


def _constraint(exc: DatabaseError) -> str | None:
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)


def _refused_by_postgres(exc: IntegrityError, principal, ref: SlotRef, number: int, code: str) -> Reservation:
    """Redis said yes, a constraint said no: Redis was wrong (stale or rebuilt). Answer what PostgreSQL knows."""
    constraint = _constraint(exc)
    if constraint == NUMBER_TAKEN:
        # Another ticket holds this number: putting it back in the free set would hand it out again and
        # fail again, forever. It stays out (counted as sold) until reconcile adopts the other ticket.
        log.error("reserve: slot %s: Redis issued #%s that PostgreSQL holds; reconcile will adopt it", ref.id, number)
        _undo(principal, ref, code, give_back=False)
        heal.kick_reconcile(ref.id)
        raise ReservationError("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS) from exc
    _undo(principal, ref, code)
    if constraint in PERSON_DAY or constraint in SAME_SLOT:
        held = (
            Ticket.objects.select_related("slot", "slot__location")
            .filter(Q(person=principal.person_key) | Q(user_id=principal.id), war_day=ref.date)
            .filter(status__in=Ticket.HOLDING)
            .order_by("pk")
        )
        if constraint in SAME_SLOT:
            held = held.filter(slot_id=ref.id)
        other = held.first()
        if other is not None:
            # Redis lacks the other ticket (or its person entry): teach Redis that slot from PostgreSQL.
            heal.kick_reconcile(other.slot_id)
            if other.slot_id == ref.id:
                log.warning("reserve: Redis forgot ticket %s of slot %s; answered from PostgreSQL", other.code, ref.id)
                return Reservation(False, ref, other.queue_number, other.code, datetime_to_ms(other.reserved_at), 0)
            raise ReservationError(
                "one_per_day",
                ticket={
                    "code": other.code,
                    "slot_id": other.slot_id,
                    "location": other.slot.location.slug,
                    "date": other.slot.date.isoformat(),
                    "time_slot": other.slot.time_label,
                },
            ) from exc
    raise _db_refusal(exc, principal.id, ref) from exc


def _undo(principal, ref: SlotRef, code: str, *, give_back: bool = True) -> None:
    reason = "db_failed" if give_back else "number_taken"
    try:
        store.release(ref.id, ref.day, principal.id, code, principal.person_key, reason, give_back=give_back)
    except REDIS_OUTAGES:
        # The journal still shows the reservation; `reconcile` finds it without a PostgreSQL row.
        log.exception("reserve: could not release %s after a PostgreSQL failure", code)


def _confirm(user_id: int, ref: SlotRef, code: str) -> None:
    try:
        script("confirm")(keys=[slot_keys(ref.id, ref.day).holders], args=[user_id, code])
    except REDIS_OUTAGES:
        # Harmless: an unconfirmed holder only makes the next retry check its row exists.
        log.warning("reserve: could not mark %s committed", code)


def _ensure_row(principal, ref: SlotRef, number: int, code: str, reserved_ms: int) -> Reservation | None:
    """The holder was never marked committed: the process may have died before PostgreSQL. Make sure.

    Returns None when the row is there (now); a Reservation when PostgreSQL knows better than Redis.
    """
    user_id = principal.id
    ticket = _new_ticket(principal, ref, number, code, reserved_ms)
    fields = ("slot_id", "user_id", "person", "war_day", "one_per_day", "queue_number", "reserved_at")
    try:
        _, created = Ticket.objects.get_or_create(code=code, defaults={f: getattr(ticket, f) for f in fields})
    except IntegrityError as exc:
        # Restoring would break a PostgreSQL promise (another ticket that day, or this number taken):
        # the holder is stale, and the answer is PostgreSQL's.
        log.error("reserve: not restoring %s: %s", code, exc)
        return _refused_by_postgres(exc, principal, ref, number, code)
    except DatabaseError as exc:
        log.error("reserve: could not restore ticket %s: %s", code, exc)
        raise ReservationError("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS) from exc
    if created:
        log.warning("reserve: restored ticket %s that Redis held without a PostgreSQL row", code)
        events.ticket_reserved(code)
    _confirm(user_id, ref, code)
    return None


def _reserve_unsafe(principal, ref: SlotRef) -> Reservation:
    """Test-only negative control: the naive check-then-act the storm test must catch overselling."""
    r = get_redis()
    keys = slot_keys(ref.id, ref.day)
    quota, sold = (int(v or 0) for v in r.hmget(keys.slot, "quota", "sold"))
    if sold >= quota:
        raise ReservationError("sold_out", remaining=0)
    # The window every real race has, made wide: a loaded CI machine answering only a few requests a
    # second must still see two attempts inside it (a 50 ms window once let a slow run sell exactly
    # the quota). Only the ~quota attempts that pass the check wait, so the test stays short.
    time.sleep(0.5)
    r.hincrby(keys.slot, "sold", 1)
    number = r.hincrby(keys.slot, "next", 1) - 1
    code = new_ticket_code()
    now_ms = clock.redis_now_ms()
    return Reservation(True, ref, number, code, now_ms, quota - sold - 1)


@dataclass(frozen=True)
class Cancellation:
    code: str
    remaining: int | None


def cancel(user_id: int | None, code: str, *, reason: str = "cancel") -> Cancellation:
    """Cancel a ticket, then free its seat in Redis.

    ``user_id`` is the caller, who must own the ticket; ``None`` is staff acting on anyone's ticket.

    PostgreSQL commits first, Redis releases after. If the release fails (Redis down, the process
    killed in between), the seat stays taken in Redis a little longer, until reconcile sees a holder
    whose ticket PostgreSQL cancelled and releases it. The other order could leave two owners of one
    number: Redis freeing the seat, then the COMMIT failing.
    """
    with transaction.atomic():
        # Row lock: two cancels of the same ticket (double click, two devices) cancel once.
        tickets = Ticket.objects.select_for_update().select_related("slot", "slot__location")
        if user_id is not None:
            tickets = tickets.filter(user_id=user_id)
        ticket = tickets.filter(code=code).first()
        if ticket is None:
            raise ReservationError("not_found")
        if ticket.status != Ticket.Status.ACTIVE:
            raise ReservationError("not_cancellable", status=ticket.status)
        ticket.status = Ticket.Status.CANCELLED
        ticket.cancelled_at = timezone.now()
        ticket.save(update_fields=["status", "cancelled_at"])
        # A drawn slot's seat goes to its waiting list, in this transaction (services/draws.py).
        promoted = draws.promote(ticket) if ticket.slot.is_draw else None
    events.ticket_cancelled(code)
    if promoted is not None:
        return Cancellation(code, draws.promote_in_redis(ticket, promoted))
    return Cancellation(code, release_seat(ticket, reason))


def release_seat(ticket: Ticket, reason: str) -> int | None:
    """Give a cancelled ticket's number back in Redis. Returns the slot's remaining, None if not now."""
    try:
        reply = store.release(
            ticket.slot_id, ticket.war_day.isoformat(), ticket.user_id, ticket.code, ticket.person, reason
        )
    except REDIS_OUTAGES as exc:
        log.warning("cancel: Redis could not release %s (%s); reconcile will", ticket.code, exc)
        return None
    if reply[0] == "not_holder":
        log.warning("cancel: Redis did not hold %s for slot %s; reconcile compares them", ticket.code, ticket.slot_id)
    return int(reply[2]) if reply[0] == "released" else None


def check_in(code: str) -> bool:
    """Mark an active ticket as used at the boutique. The seat stays taken, so Redis is untouched."""
    # State-conditional update: a ticket cancelled a moment ago is not checked in.
    return Ticket.objects.filter(code=code, status=Ticket.Status.ACTIVE).update(status=Ticket.Status.CHECKED_IN) == 1
