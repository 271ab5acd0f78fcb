"""Draw mode: whoever enters in time has the same chance, and anyone can verify the draw.

A draw slot (``Slot.allocation == "draw"``) takes *entries* from ``entry_opens_at`` until ``draw_at``
(war_opens_at + draw_grace_seconds): ``POST /api/war`` answers 202 ``entered`` once the entry is committed
in PostgreSQL. At ``draw_at`` one process draws:

1. PostgreSQL, one transaction, under the ``Draw`` row's lock: the entrant list is frozen, ordered
   (``draw_order``), entrants who hold another ticket that day are skipped, the first ``quota`` others
   get tickets 1..quota in drawn order (one multi-row INSERT), the rest a waiting-list position, and
   every entry's outcome is written in one UPDATE. All or nothing.
2. Redis (draw_apply.lua), from what PostgreSQL committed: holders, the day's person hash, counters,
   the waiting list, and ``draw`` = "done" in the slot hash. Until then reserve.lua answers ``not_ready``
   for the slot, so nobody hears "reserved" without a row and no number goes first come, first served.
   The apply is idempotent and redone from PostgreSQL by any rerun (and by every rebuild of the day).

Who draws, on time: ``live_quota``'s chore loop every 100 ms (``run_due``: Redis only while nothing is
due), Celery beat as a backstop, and a war request meeting an undrawn slot after ``draw_at`` (``kick``).
A Redis lock keeps them from piling up; the ``Draw`` row lock makes the draw happen once.

Verifiable (docs/fairness.md): the ``Draw`` row's secret ``seed`` is committed to (``commitment =
sha256(seed)``, public from creation) before the window opens; at the draw the order is
``HMAC(HMAC(seed, entrants_hash), pseudonym)`` ascending, where ``entrants_hash`` covers every entrant,
so neither the operator (seed fixed beforehand) nor an entrant (order unknown until the list is closed)
can choose positions. ``published`` is what ``GET /api/slots/<id>/draw`` shows; ``verify`` rechecks it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import signal
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, IntegrityError, close_old_connections, connection, connections, transaction
from django.db.models import Q
from django.utils.translation import gettext

from queueing.models import Draw, DrawEntry, Slot, Ticket, new_ticket_code
from queueing.services import catalog, clock, events, heal, quota
from queueing.services.catalog import SlotRef
from queueing.services.errors import ReservationError
from queueing.services.store import ms_to_datetime, pow_key, rate_keys, rate_limit_args, script, slot_keys
from wartiket.outages import REDIS_OUTAGES
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)

LOCK_KEY = "war:draw:lock:{}"
# Only keeps concurrent runners from queueing on the Draw row lock; exactly once comes from that lock.
# A runner killed while holding it delays the rerun by at most this long.
LOCK_MS = 5_000
# A draw whose INSERT met an in-flight first-come reservation of the same person elsewhere that day is
# retried (the retry skips that person); more than this many in a row is a bug worth an error.
DRAW_ATTEMPTS = 5

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# --- The verifiable part: pure functions, also written out in docs/fairness.md ---------------------


def new_seed() -> str:
    return secrets.token_hex(32)


def commitment_of(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def entrants_hash(pseudonyms) -> str:
    return hashlib.sha256("\n".join(sorted(pseudonyms)).encode()).hexdigest()


def draw_order(seed: str, pseudonyms) -> list[str]:
    """The entrants in drawn order: by HMAC-SHA256(key=HMAC-SHA256(seed, entrants_hash), pseudonym)."""
    key = hmac.new(seed.encode(), entrants_hash(pseudonyms).encode(), hashlib.sha256).digest()
    return sorted(pseudonyms, key=lambda name: hmac.new(key, name.encode(), hashlib.sha256).hexdigest())


def pseudonym(slot_id: int, person: str) -> str:
    """A person's public alias in one slot's draw: recognisable to them, meaningless to anyone else."""
    key = hashlib.sha256(b"wartiket-draw-pseudonym:" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(key, f"{slot_id}:{person}".encode(), hashlib.sha256).hexdigest()[:16]


def ensure_draw(slot_id: int) -> Draw:
    """The slot's Draw row, created with a fresh secret seed if missing (normally at slot creation)."""
    seed = new_seed()
    draw, _ = Draw.objects.get_or_create(slot_id=slot_id, defaults={"seed": seed, "commitment": commitment_of(seed)})
    return draw


# --- Entries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A war result for a draw slot's entry window: the view answers it like a reservation (202)."""

    slot: SlotRef
    pseudonym: str
    commitment: str
    outcome = "entered"

    def body(self) -> dict:
        return {
            "code": self.outcome,
            "entry": {
                "slot_id": self.slot.id,
                "position": None,
                "draw_at": ms_to_datetime(self.slot.draw_ms).isoformat(),
                "commitment": self.commitment,
                "pseudonym": self.pseudonym,
            },
        }


def enter(principal, ref: SlotRef, client_ip: str, token, proof=None) -> list | None:
    """enter.lua for an attempt on a draw slot; None when reserve.lua decides instead (after draw_at).

    Its answers have reserve.lua's shapes (too_early, rate_limited, one_per_day, not_ready,
    challenge_invalid), so the reservation service reports them the same way. ``proof``: the verified
    proof of work (``challenge.check_war``), spent by the script only if the attempt is an entry attempt.
    Redis outages propagate.
    """
    keys = slot_keys(ref.id, ref.day)
    reply = script("enter")(
        keys=[
            keys.slot,
            keys.day,
            keys.stats,
            *rate_keys(ref.day, principal.id, client_ip or "-"),
            keys.entrants,
            proof.key if proof else pow_key(ref.day, "-"),
        ],
        args=[
            ref.id,
            1 if token else 0,
            1 if settings.WAR_ONE_PER_DAY else 0,
            *rate_limit_args(),
            principal.person_key,
            settings.WAR_DRAW_ENTRY_MINUTES * 60_000,
            proof.ttl_ms if proof else 0,
        ],
    )
    return None if reply[0] in ("fcfs", "after") else reply


def record_entry(principal, ref: SlotRef, now_ms: int, client_ip: str = "") -> Entry:
    """Commit the entry enter.lua admitted (idempotent), or refuse it if the draw already froze the list."""
    try:
        commitment = ensure_draw(ref.id).commitment
        with transaction.atomic():
            # FOR SHARE: entries do not wait for each other, but the draw's FOR UPDATE waits for every
            # entry already inserting, and an entry arriving after the draw sees it drawn.
            with connection.cursor() as cursor:
                cursor.execute("SELECT drawn_at FROM queueing_draw WHERE slot_id = %s FOR SHARE", [ref.id])
                (drawn_at,) = cursor.fetchone()
            if drawn_at is not None:
                # Admitted by Redis just before draw_at, arrived after the draw froze the list: not entered.
                # A retry meets the drawn slot (reserve.lua) and hears its real answer.
                raise ReservationError("not_ready", retry_after=1)
            entry = DrawEntry(
                slot_id=ref.id,
                user_id=principal.id,
                person=principal.person_key,
                pseudonym=pseudonym(ref.id, principal.person_key),
                entered_at=ms_to_datetime(now_ms),
                client_ip=client_ip or None,
            )
            DrawEntry.objects.bulk_create([entry], ignore_conflicts=True)  # ON CONFLICT DO NOTHING: a retry
            alias = (
                DrawEntry.objects.filter(Q(user_id=principal.id) | Q(person=principal.person_key), slot_id=ref.id)
                .values_list("pseudonym", flat=True)
                .first()
            )
    except DatabaseError as exc:
        log.warning("draw entry: PostgreSQL unavailable: %s", exc)
        raise ReservationError("unavailable", retry_after=settings.WAR_RETRY_AFTER_SECONDS) from exc
    return Entry(ref, alias, commitment)


def refusal_after_draw(principal, ref: SlotRef, outcome: str, reply: list, now_ms: int) -> None:
    """reserve.lua refused an attempt on a draw slot: kick a due draw; tell a waiting entrant their place."""
    if outcome == "not_ready" and now_ms >= ref.draw_ms:
        kick(ref.id)
    elif outcome == "not_drawn":
        alias = pseudonym(ref.id, principal.person_key)
        raise ReservationError("not_drawn", counted=True, waitlist_position=int(reply[2]), pseudonym=alias)


# --- The draw ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrawRun:
    slot_id: int
    committed: bool  # this run made the draw (False: it was made before; this run only applied it)
    applied: bool  # this run wrote the result to Redis


def run_draw(slot_id: int, *, fault: str | None = None) -> DrawRun | None:
    """Draw the slot if it is not drawn yet, then make sure Redis has the result. None if another runs."""
    fault = fault if settings.WAR_FAULT_INJECTION else None
    r = get_redis()
    lock, token = LOCK_KEY.format(slot_id), secrets.token_hex(8)
    if not r.set(lock, token, nx=True, px=LOCK_MS):
        return None
    try:
        slot = Slot.objects.select_related("location").get(pk=slot_id)
        if not slot.is_draw:
            return None
        ensure_draw(slot_id)
        for attempt in range(1, DRAW_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    committed = _draw(slot, fault)
                break
            except IntegrityError as exc:
                # A first-come ticket elsewhere that day committed after our look at the day's tickets:
                # the retry sees it and skips that person.
                if attempt == DRAW_ATTEMPTS:
                    raise
                log.warning("draw: slot %s: a winner got another ticket meanwhile (%s); drawing again", slot_id, exc)
        if fault == "kill-after-commit":
            os.kill(os.getpid(), signal.SIGKILL)  # test-only: between the PostgreSQL commit and Redis
        applied = apply(slot)
        if committed or applied:
            # Exactly once per ticket however often this runs (notifications are unique per ticket and kind).
            codes = quota.holding_tickets(slot=slot).values_list("code", flat=True)
            for code in codes:
                events.ticket_reserved(code)
            events.draw_made(slot_id)  # the waiting list hears its places (notifications)
        return DrawRun(slot_id, committed, applied)
    finally:
        r.eval(_RELEASE_LOCK, 1, lock, token)


def _draw(slot: Slot, fault: str | None) -> bool:
    """The PostgreSQL part, inside the caller's transaction. False if the slot was already drawn."""
    draw = Draw.objects.select_for_update().get(slot=slot)
    if draw.is_drawn:
        return False
    started = time.monotonic()
    started_at = clock.redis_now()
    entries = list(DrawEntry.objects.filter(slot=slot).values_list("id", "user_id", "person", "pseudonym"))
    by_alias = {entry[3]: entry for entry in entries}
    order = draw_order(draw.seed, list(by_alias))
    held_persons, held_users = set(), set()
    if settings.WAR_ONE_PER_DAY and entries:
        # Subqueries rather than lists of every entrant: one short statement however many entered.
        entered = DrawEntry.objects.filter(slot=slot)
        held = Ticket.objects.filter(war_day=slot.date, status__in=Ticket.HOLDING, one_per_day=True).filter(
            Q(person__in=entered.values("person")) | Q(user_id__in=entered.values("user_id"))
        )
        for person, user_id in held.values_list("person", "user_id"):
            held_persons.add(person)
            held_users.add(user_id)

    now_ms = clock.redis_now_ms()
    tickets, rows = [], []  # rows: (entry id, outcome, position, waitlist position, index into tickets)
    waiting = 0
    for position, alias in enumerate(order, start=1):
        entry_id, user_id, person, _alias = by_alias[alias]
        if person in held_persons or user_id in held_users:
            rows.append((entry_id, DrawEntry.Outcome.SKIPPED, position, None, None))
        elif len(tickets) < slot.quota:
            rows.append((entry_id, DrawEntry.Outcome.WON, position, None, len(tickets)))
            tickets.append(
                Ticket(
                    slot=slot,
                    user_id=user_id,
                    person=person,
                    war_day=slot.date,
                    one_per_day=settings.WAR_ONE_PER_DAY,
                    queue_number=len(tickets) + 1,
                    code=new_ticket_code(),
                    reserved_at=ms_to_datetime(now_ms),
                )
            )
        else:
            waiting += 1
            rows.append((entry_id, DrawEntry.Outcome.WAITING, position, waiting, None))
    Ticket.objects.bulk_create(tickets)  # one multi-row INSERT; PostgreSQL returns the ids
    if rows:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE queueing_drawentry AS e
                   SET outcome = v.outcome, position = v.position, waitlist_position = v.waitlist, ticket_id = v.ticket
                  FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::int[], %s::bigint[])
                       AS v(id, outcome, position, waitlist, ticket)
                 WHERE e.id = v.id
                """,
                [
                    [row[0] for row in rows],
                    [str(row[1]) for row in rows],
                    [row[2] for row in rows],
                    [row[3] for row in rows],
                    [None if row[4] is None else tickets[row[4]].pk for row in rows],
                ],
            )
    if fault == "kill-before-commit":
        os.kill(os.getpid(), signal.SIGKILL)  # test-only: PostgreSQL must roll all of it back
    done_ms = clock.redis_now_ms()
    draw.entrants_hash = entrants_hash(by_alias)
    draw.entrants, draw.winners, draw.waiting = len(entries), len(tickets), waiting
    draw.skipped = len(entries) - len(tickets) - waiting
    draw.started_at, draw.drawn_at = started_at, ms_to_datetime(done_ms)
    draw.duration_ms = int((time.monotonic() - started) * 1000)
    draw.lag_ms = done_ms - int(slot.draw_at.timestamp() * 1000)
    draw.save()
    log.info(
        "draw: slot %s: %d entrants, %d tickets, %d waiting, %d skipped, %d ms (%d ms after draw_at)",
        slot.pk,
        draw.entrants,
        draw.winners,
        draw.waiting,
        draw.skipped,
        draw.duration_ms,
        draw.lag_ms,
    )
    return True


def apply(slot: Slot) -> bool:
    """Write PostgreSQL's draw result to Redis unless Redis has it. True if written now."""
    with transaction.atomic():
        # The Draw row's lock, as a promotion takes it (``promote``): no cancel can promote someone between
        # this read and the script, which would leave Redis with the cancelled holder instead.
        if not Draw.objects.select_for_update().filter(slot=slot, drawn_at__isnull=False).exists():
            return False
        rows = list(quota.holding_tickets(slot=slot).values_list(*quota.TICKET_FIELDS))
        waiting = quota.waitlist_args([slot.pk])[slot.pk]
        keys = slot_keys(slot.pk, slot.war_day)
        reply = script("draw_apply")(
            keys=[keys.slot, keys.free, keys.holders, keys.day, keys.waitlist],
            args=[slot.pk, len(rows), *quota._ticket_args(rows), len(waiting) // 2, *waiting],
        )
    if reply[0] == "not_ready":
        heal.kick()  # Redis lost the slot: its rebuild writes the result from PostgreSQL
    return reply[0] == "applied"


_refs: tuple[float, list[SlotRef]] = (float("-inf"), [])
REFS_REFRESH_SECONDS = 1.0


def _draw_refs() -> list[SlotRef]:
    """Draw slots of the war catalog, re-read at most once a second (the catalog changes on edits only)."""
    global _refs
    read_at, refs = _refs
    if time.monotonic() - read_at >= REFS_REFRESH_SECONDS:
        refs = []
        for name, raw in get_redis().hgetall(catalog.CATALOG_KEY).items():
            if name.startswith("id:") and '"allocation": "draw"' in raw:
                refs.append(SlotRef(**json.loads(raw)))
        _refs = (time.monotonic(), refs)
    return refs


def run_due() -> list[int]:
    """Draw every draw slot whose time has come and whose result Redis lacks. Redis only, unless one is due."""
    refs = _draw_refs()
    if not refs:
        return []
    now_ms = clock.redis_now_ms()
    due = [ref for ref in refs if ref.draw_ms <= now_ms]
    if not due:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for ref in due:
        pipe.hget(slot_keys(ref.id, ref.day).slot, "draw")
    ran = []
    for ref, state in zip(due, pipe.execute(), strict=True):
        if state is not None and state != "done" and run_draw(ref.id) is not None:
            ran.append(ref.id)
    return ran


def periodic() -> list[int]:
    """``run_due`` for a loop (live_quota, Celery beat); starts on a fresh connection if the last one broke."""
    close_old_connections()
    try:
        return run_due()
    except DatabaseError:
        connections.close_all()
        raise


def kick(slot_id: int) -> None:
    """A request met an undrawn slot after its draw time: draw it in the background (like heal.kick)."""
    heal.spawn(("draw", slot_id), lambda: run_draw(slot_id))


def change_refusal(slot_id: int | None, allocation: str, war_opens_at, draw_grace_seconds) -> str | None:
    """Why a staff edit of a slot would break a draw's promises, or None. (Admin form; see SlotForm.)"""
    old = Slot.objects.filter(pk=slot_id).first() if slot_id else None
    if old is None:
        return None
    if allocation != old.allocation:
        if old.is_draw and DrawEntry.objects.filter(slot_id=slot_id).exists():
            return gettext("Undian ini sudah punya peserta: cara pembagiannya tidak bisa diubah lagi.")
        if not old.is_draw and Ticket.objects.filter(slot_id=slot_id, status__in=Ticket.HOLDING).exists():
            return gettext("Slot ini sudah punya tiket: tidak bisa diubah menjadi undian.")
    drawn = old.is_draw and Draw.objects.filter(slot_id=slot_id, drawn_at__isnull=False).exists()
    moved = (war_opens_at is not None and war_opens_at != old.war_opens_at) or (
        draw_grace_seconds is not None and draw_grace_seconds != old.draw_grace_seconds
    )
    if drawn and moved:
        return gettext("Undian sudah ditarik: waktu war dan tenggang undian tidak bisa diubah lagi.")
    return None


# --- The waiting list ----------------------------------------------------------------------------


def withdraw_entries(user_id: int) -> int:
    """Staff switched the account off (accounts/services/abuse.py ``disable``): its entries leave every draw.

    An entry not drawn yet is deleted (it never was in a published list), in PostgreSQL and in Redis'
    entrant count. A place on a waiting list is marked withdrawn and leaves Redis' waiting list: the record
    keeps its pseudonym and position (the published order must still verify), and promotion passes it by.
    Tickets are the caller's business (cancelled through the cancel service). Returns the entries touched.
    """
    with transaction.atomic():
        entries = list(
            DrawEntry.objects.select_for_update()
            .select_related("slot")
            .filter(user_id=user_id, outcome__in=[DrawEntry.Outcome.PENDING, DrawEntry.Outcome.WAITING])
        )
        pending = [e for e in entries if e.outcome == DrawEntry.Outcome.PENDING]
        # The draw's FOR UPDATE on its Draw row orders this against a draw freezing the list right now.
        drawn = set(
            Draw.objects.select_for_update()
            .filter(slot_id__in={e.slot_id for e in pending}, drawn_at__isnull=False)
            .values_list("slot_id", flat=True)
        )
        DrawEntry.objects.filter(pk__in=[e.pk for e in pending if e.slot_id not in drawn]).delete()
        waiting = [e for e in entries if e.outcome == DrawEntry.Outcome.WAITING]
        DrawEntry.objects.filter(pk__in=[e.pk for e in waiting]).update(outcome=DrawEntry.Outcome.WITHDRAWN)
    try:
        pipe = get_redis().pipeline(transaction=False)
        for entry in entries:
            keys = slot_keys(entry.slot_id, entry.slot.war_day)
            pipe.srem(keys.entrants, entry.person)
            pipe.hdel(keys.waitlist, entry.person)
        pipe.execute()
    except REDIS_OUTAGES as exc:
        # Only counts and a waiting-list answer to a disabled account (which cannot ask any more) are stale.
        log.warning("withdraw entries of %s: Redis not updated (%s)", user_id, exc)
    return len(entries)


def promote(cancelled: Ticket) -> Ticket | None:
    """Inside the cancel's transaction: give the cancelled ticket's number to the first eligible waiting
    entrant (a ticket committed with the cancellation). Entrants holding another ticket that day by now
    are skipped. None if the slot is not drawn or nobody is waiting."""
    draw = Draw.objects.select_for_update().filter(slot_id=cancelled.slot_id, drawn_at__isnull=False).first()
    if draw is None:
        return None
    waiting = DrawEntry.objects.select_for_update().filter(slot_id=cancelled.slot_id, outcome=DrawEntry.Outcome.WAITING)
    for entry in waiting.order_by("waitlist_position"):
        ticket = Ticket(
            slot_id=cancelled.slot_id,
            user_id=entry.user_id,
            person=entry.person,
            war_day=cancelled.war_day,
            one_per_day=settings.WAR_ONE_PER_DAY,
            queue_number=cancelled.queue_number,
            code=new_ticket_code(),
            reserved_at=clock.redis_now(),
        )
        try:
            with transaction.atomic():  # a savepoint: a refused INSERT leaves the cancel standing
                ticket.save(force_insert=True)
        except IntegrityError:
            # One per day holds in PostgreSQL: this entrant has another ticket that day by now.
            entry.outcome = DrawEntry.Outcome.SKIPPED
            entry.save(update_fields=["outcome"])
            continue
        entry.outcome, entry.ticket = DrawEntry.Outcome.PROMOTED, ticket
        entry.save(update_fields=["outcome", "ticket"])
        return ticket
    return None


def promote_in_redis(cancelled: Ticket, promoted: Ticket) -> int | None:
    """After the commit: swap the holder in Redis, then announce the promoted ticket. Returns remaining."""
    keys = slot_keys(cancelled.slot_id, cancelled.war_day.isoformat())
    remaining = None
    try:
        reply = script("promote")(
            keys=[keys.slot, keys.free, keys.holders, keys.day, keys.waitlist],
            args=[
                cancelled.user_id,
                cancelled.code,
                cancelled.slot_id,
                cancelled.person,
                promoted.user_id,
                promoted.person,
                promoted.code,
                int(promoted.reserved_at.timestamp() * 1000),
                1 if promoted.one_per_day else 0,
                promoted.queue_number,
            ],
        )
        if reply[0] == "promoted":
            remaining = int(reply[3])
        else:
            log.warning("promote: Redis not ready for slot %s; reconcile/heal bring it up", cancelled.slot_id)
    except REDIS_OUTAGES as exc:
        log.warning("promote: Redis could not swap %s for %s (%s); reconcile will", cancelled.code, promoted.code, exc)
    events.ticket_reserved(promoted.code)
    return remaining


# --- What is published, and checking it -----------------------------------------------------------

# "Verify it yourself": stdlib Python anyone can run against GET /api/slots/<id>/draw. The same text is in
# docs/fairness.md and on the draw page (``verify_snippet``), and a test runs it against a live server.
SNIPPET_URL = "https://wartiket.example/api/slots/42/draw"
VERIFY_SNIPPET = f"""import hashlib, hmac, json, urllib.request

record = json.load(urllib.request.urlopen("{SNIPPET_URL}"))
seed, names = record["seed"], [e["pseudonym"] for e in record["entrants"]]
assert hashlib.sha256(seed.encode()).hexdigest() == record["commitment"], "seed does not match the commitment"
entrants_hash = hashlib.sha256("\\n".join(sorted(names)).encode()).hexdigest()
assert entrants_hash == record["entrants_hash"], "the entrant list is not the one drawn"
key = hmac.new(seed.encode(), entrants_hash.encode(), hashlib.sha256).digest()
order = sorted(names, key=lambda name: hmac.new(key, name.encode(), hashlib.sha256).hexdigest())
rank = {{name: i for i, name in enumerate(order, start=1)}}
assert all(e["position"] == rank[e["pseudonym"]] for e in record["entrants"]), "positions differ"
print("draw verified:", len(names), "entrants")
"""


def verify_snippet(url: str) -> str:
    return VERIFY_SNIPPET.replace(SNIPPET_URL, url)


def published(slot: Slot) -> dict:
    """The public record of a slot's draw (``GET /api/slots/<id>/draw``, the draw page, ``verify_draw``)."""
    draw = ensure_draw(slot.pk)
    entries = DrawEntry.objects.filter(slot=slot).order_by("position", "pseudonym")
    return {
        "slot_id": slot.pk,
        "allocation": slot.allocation,
        "quota": slot.quota,
        "commitment": draw.commitment,
        "entrants_hash": draw.entrants_hash or None,
        "seed": draw.seed if draw.is_drawn else None,
        "entry_opens_at": slot.entry_opens_at.isoformat(),
        "draw_at": slot.draw_at.isoformat(),
        "drawn_at": draw.drawn_at.isoformat() if draw.drawn_at else None,
        "entrants_count": len(entries),
        "winners": draw.winners,
        "waiting": draw.waiting,
        "skipped": draw.skipped,
        "entrants": [
            {"pseudonym": e.pseudonym, "position": e.position, "outcome": e.outcome}
            for e in entries.only("pseudonym", "position", "outcome")
        ],
    }


def verify(record: dict) -> list[str]:
    """Recompute commitment, entrants_hash and order from a published record; the differences found."""
    seed = record.get("seed")
    if not seed:
        return ["not drawn yet: the seed is published only after the draw"]
    problems = []
    if commitment_of(seed) != record["commitment"]:
        problems.append(f"commitment: sha256(seed) is {commitment_of(seed)}, published {record['commitment']}")
    names = [entry["pseudonym"] for entry in record["entrants"]]
    if entrants_hash(names) != record["entrants_hash"]:
        problems.append(
            f"entrants_hash: the {len(names)} entrants hash to {entrants_hash(names)}, "
            f"published {record['entrants_hash']}"
        )
    expected = {name: position for position, name in enumerate(draw_order(seed, names), start=1)}
    wrong = [e for e in record["entrants"] if e["position"] != expected[e["pseudonym"]]]
    for entry in wrong[:10]:
        name = entry["pseudonym"]
        problems.append(f"position of {name}: recomputed {expected[name]}, published {entry['position']}")
    if len(wrong) > 10:
        problems.append(f"... and {len(wrong) - 10} more positions differ")
    return problems
