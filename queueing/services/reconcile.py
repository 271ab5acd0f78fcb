"""Compare PostgreSQL with Redis per slot, and repair what a crash or an outage left behind, safely mid-war.

What is compared, per slot: quota, opening and closing times, the holders (PostgreSQL's holding tickets
against Redis' holders hash), the ``sold`` counter, the war day's person entries, and the day's journal.
Redis is read in one MULTI per war day (a consistent snapshot: a healthy live war shows no drift), after
PostgreSQL; what looks missing from Redis is read again from PostgreSQL before it counts, because a
cancel may have committed in between.

What repair does, and never does. It is meant to run during live wars (Celery beat runs it every
minute, see ``queueing.tasks``), so it only ever *adds* what is missing or *finishes* what was begun:
- writes the row of a reservation Redis holds but PostgreSQL lacks (the process died between the two),
  once it is older than ``grace_ms`` (younger ones may still be committing);
- releases in Redis a holder whose ticket PostgreSQL has cancelled (a cancel whose Redis step failed);
- merges into Redis the holding tickets it lacks (merge.lua: holders, numbers, person entries);
- brings quota and times up to PostgreSQL's (set_quota.lua);
- closes journal entries whose reservation is gone from Redis without a row (an undone attempt).
It never rebuilds a live slot and never drops an in-flight holder. A slot Redis has no state for at all
is left to self-heal (``services/heal.py``), which rebuilds whole war days under a lock.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, IntegrityError

from queueing.models import Slot, Ticket
from queueing.services import clock, quota, store
from queueing.services import slots as slot_edits
from queueing.services.store import datetime_to_ms, day_keys, ms_to_datetime, script, slot_keys
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)

LAST_CHECK_KEY = "war:reconcile:last"


@dataclass
class SlotReport:
    slot: Slot
    pg_holding: int = 0
    redis_ready: bool = True
    redis_sold: int | None = None
    missing_in_pg: list[dict] = field(default_factory=list)  # held in Redis, older than grace, no row
    missing_in_redis: list[str] = field(default_factory=list)  # a holding row Redis does not know
    cancelled_but_held: list[dict] = field(default_factory=list)  # PostgreSQL cancelled, Redis still holds
    day_entries: list[str] = field(default_factory=list)  # person entries missing or wrong
    orphan_journal: list[str] = field(default_factory=list)  # journal reservations gone without a row
    settings_differ: bool = False  # quota or war times differ from PostgreSQL's, or an edit is stuck pending
    sold_differs: bool = False  # the sold counter disagrees with the holders
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(
            self.missing_in_pg
            or self.missing_in_redis
            or self.cancelled_but_held
            or self.day_entries
            or self.problems
            or not self.redis_ready
        )

    def lines(self) -> list[str]:
        """What drifted, one line each (for the command, the log and the war room)."""
        out = [f"missing in PostgreSQL: #{e['number']} {e['code']} user {e['user']}" for e in self.missing_in_pg]
        out += [f"missing in Redis: {code}" for code in self.missing_in_redis]
        out += [f"cancelled in PostgreSQL, held in Redis: {e['code']}" for e in self.cancelled_but_held]
        out += [f"day entry: {entry}" for entry in self.day_entries]
        out += self.problems
        return out


@dataclass
class _Snapshot:
    meta: dict
    holders: dict[str, dict]  # code -> holder
    day: dict[str, str]  # person -> "slot id|code"
    journal_open: dict[str, dict]  # code -> journal entry of a reservation not released


def _parse_holders(raw: dict[str, str]) -> dict[str, dict]:
    holders = {}
    for user_id, value in raw.items():
        number, code, ts, committed, person = value.split("|", 4)
        holders[code] = {
            "user": user_id,
            "number": int(number),
            "code": code,
            "ts": int(ts),
            "committed": committed == "1",
            "person": person,
        }
    return holders


def _snapshot(day: str, slots: list[Slot]) -> dict[int, _Snapshot]:
    """Every slot of one war day, its person hash and its journal, read in one MULTI."""
    day_key, journal_key = day_keys(day)
    pipe = get_redis().pipeline(transaction=True)
    for slot in slots:
        keys = slot_keys(slot.pk, day)
        pipe.hgetall(keys.slot)
        pipe.hgetall(keys.holders)
    pipe.hgetall(day_key)
    pipe.xrange(journal_key)
    replies = pipe.execute()
    day_hash, journal = replies[-2], replies[-1]
    open_by_slot: dict[str, dict[str, dict]] = defaultdict(dict)
    for _id, entry in journal:
        if entry["op"] == "reserve":
            open_by_slot[entry["slot"]][entry["code"]] = entry
        else:  # release or close
            open_by_slot[entry["slot"]].pop(entry["code"], None)
    return {
        slot.pk: _Snapshot(replies[2 * i], _parse_holders(replies[2 * i + 1]), day_hash, open_by_slot[str(slot.pk)])
        for i, slot in enumerate(slots)
    }


def check_day(day: str, slots: list[Slot], *, grace_ms: int = 5000) -> list[SlotReport]:
    # PostgreSQL first, then Redis: a reservation made in between shows in Redis only, younger than the
    # grace, and is left alone; a cancel made in between is caught by the re-read below.
    tickets = list(
        Ticket.objects.filter(slot__in=slots).values_list(
            "slot_id", "code", "user_id", "person", "queue_number", "status", "one_per_day"
        )
    )
    snapshots = _snapshot(day, slots)
    now_ms = clock.redis_now_ms()
    cutoff = now_ms - grace_ms
    reports = []
    for slot in slots:
        report = SlotReport(slot)
        snap = snapshots[slot.pk]
        rows = {t[1]: t for t in tickets if t[0] == slot.pk}
        holding = {code: t for code, t in rows.items() if t[5] in Ticket.HOLDING}
        report.pg_holding = len(holding)
        if not snap.meta.get("quota"):
            report.redis_ready = False
            report.problems.append("Redis has no state for this slot (self-heal rebuilds it)")
            reports.append(report)
            continue
        report.redis_sold = int(snap.meta["sold"])
        pending = snap.meta.get("pending")
        if pending is not None and now_ms - int(pending) >= slot_edits.PENDING_STALE_MS:
            report.settings_differ = True
            report.problems.append("a staff edit has not reached Redis (pending)")
        elif pending is None:
            expected = {
                "quota": slot.quota,
                "opens": datetime_to_ms(slot.war_opens_at),
                "closes": datetime_to_ms(slot.closes_at),
            }
            for name, value in expected.items():
                if int(snap.meta[name]) != value:
                    report.settings_differ = True
                    report.problems.append(f"{name} differs: PostgreSQL {value}, Redis {snap.meta[name]}")

        for code, holder in snap.holders.items():
            row = rows.get(code)
            if row is None:
                if holder["ts"] <= cutoff:
                    report.missing_in_pg.append(holder)
            elif row[5] == Ticket.Status.CANCELLED:
                report.cancelled_but_held.append(holder)
        missing = [code for code in holding if code not in snap.holders]
        if missing:
            # Cancelled since PostgreSQL was read? Then Redis is right not to hold them.
            still = set(
                Ticket.objects.filter(code__in=missing, status__in=Ticket.HOLDING).values_list("code", flat=True)
            )
            report.missing_in_redis = [code for code in missing if code in still]
        if report.redis_sold != len(snap.holders):
            report.sold_differs = True
            report.problems.append(f"Redis sold counter {report.redis_sold} but {len(snap.holders)} holders")

        for code, t in holding.items():
            person, one_per_day = t[3], t[6]
            if one_per_day and snap.day.get(person) != f"{slot.pk}|{code}" and code not in report.missing_in_redis:
                report.day_entries.append(f"{person} should point at {slot.pk}|{code}, not {snap.day.get(person)}")
        report.orphan_journal = [
            code for code, entry in snap.journal_open.items() if code not in snap.holders and code not in rows
        ]
        reports.append(report)
    return reports


def repair_slot(report: SlotReport) -> SlotReport:
    """Finish what a crash or an outage left half-done, without rebuilding the slot (see module doc)."""
    slot = report.slot
    if not report.redis_ready:
        return report  # self-heal rebuilds the whole war day; a repair must not do it under buyers' feet
    keys = slot_keys(slot.pk, slot.war_day)
    for holder in report.missing_in_pg:
        try:
            _, created = Ticket.objects.get_or_create(
                code=holder["code"],
                defaults={
                    "slot": slot,
                    "user_id": int(holder["user"]),
                    "person": holder["person"],
                    "war_day": slot.date,
                    "one_per_day": settings.WAR_ONE_PER_DAY,
                    "queue_number": holder["number"],
                    "reserved_at": ms_to_datetime(holder["ts"]),
                },
            )
        except IntegrityError as exc:
            # PostgreSQL refuses it (the person holds another ticket that day, the number is taken):
            # the holder is wrong, not the database. Release it; the number goes back only if free.
            number_taken = "ticket_unique_holding_number" in str(exc)
            _release(slot, holder, "reconcile_refused", give_back=not number_taken)
            report.repaired.append(f"released {holder['code']} (PostgreSQL refused it: {exc.__cause__})")
            continue
        except DatabaseError as exc:
            report.problems.append(f"could not restore {holder['code']}: {exc}")
            log.error("reconcile: could not restore %s: %s", holder["code"], exc)
            continue
        script("confirm")(keys=[keys.holders], args=[holder["user"], holder["code"]])
        if created:
            report.repaired.append(f"restored ticket {holder['code']}")
    for holder in report.cancelled_but_held:
        _release(slot, holder, "reconcile_cancelled", give_back=True)
        report.repaired.append(f"released cancelled ticket {holder['code']}")
    if report.missing_in_redis or report.day_entries or report.sold_differs:
        rows = quota.holding_tickets(slot=slot).values_list(*quota.TICKET_FIELDS)
        reply = script("merge")(keys=keys.merge, args=[slot.pk, *quota._ticket_args(rows)])
        if reply[0] == "merged":
            report.repaired.append(f"merged {int(reply[2])} holder(s) from PostgreSQL into Redis")
    if report.settings_differ:
        quota.sync(slot)
        report.repaired.append("quota and war times set from PostgreSQL")
    if report.orphan_journal:
        pipe = get_redis().pipeline(transaction=False)
        for code in report.orphan_journal:
            pipe.xadd(
                keys.journal,
                {"op": "close", "slot": slot.pk, "code": code, "ts": clock.redis_now_ms()},
                maxlen=settings.WAR_JOURNAL_MAXLEN,
                approximate=True,
            )
        pipe.execute()
        report.repaired.append(f"closed {len(report.orphan_journal)} journal entr(y/ies) without a ticket")
    return report


def _release(slot: Slot, holder: dict, reason: str, *, give_back: bool) -> None:
    store.release(slot.pk, slot.war_day, holder["user"], holder["code"], holder["person"], reason, give_back=give_back)


def reconcile(slots=None, *, repair: bool = False, grace_ms: int = 5000) -> list[SlotReport]:
    """Check (and with ``repair``, repair) the given slots, or every upcoming one. Returns the reports."""
    slots = list(slots) if slots is not None else quota.upcoming_slots()
    by_day: dict[str, list[Slot]] = defaultdict(list)
    for slot in slots:
        by_day[slot.war_day].append(slot)
    reports = []
    for day, day_slots in sorted(by_day.items()):
        for report in check_day(day, day_slots, grace_ms=grace_ms):
            if repair and report.drift:
                repair_slot(report)
            reports.append(report)
    return reports


def record(reports: list[SlotReport]) -> dict:
    """Keep the latest check's outcome in Redis for the war room and ``war_status``; log drift at ERROR."""
    drifted = [r for r in reports if r.drift]
    for report in drifted:
        log.error("reconcile: slot %s %s drifts: %s", report.slot.pk, report.slot, "; ".join(report.lines()))
    summary = {
        "at_ms": clock.redis_now_ms(),
        "checked": len(reports),
        "drift": [{"slot": r.slot.pk, "lines": r.lines(), "repaired": r.repaired} for r in drifted],
    }
    get_redis().set(LAST_CHECK_KEY, json.dumps(summary))
    return summary


def last_check_raw() -> str | None:
    """The latest recorded check, as ``record`` stored it (JSON), or None."""
    return get_redis().get(LAST_CHECK_KEY)
