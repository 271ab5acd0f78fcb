"""Compare PostgreSQL, Redis and the journal per slot, and repair what a crash left behind.

A process killed between reserve.lua and the PostgreSQL commit leaves a Redis holder (never marked
committed) and a journal entry, but no row. ``repair`` writes that row with the number, code and Redis
time the buyer was given. Recent reservations (younger than ``grace_ms``) are left alone: their
process may still be committing them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import DatabaseError

from queueing.models import Slot, Ticket
from queueing.services import clock, quota
from queueing.services.store import ms_to_datetime, slot_keys
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)


@dataclass
class SlotReport:
    slot: Slot
    pg_holding: int = 0
    redis_ready: bool = True
    redis_sold: int | None = None
    redis_quota: int | None = None
    missing_in_pg: list[dict] = field(default_factory=list)  # reserved in Redis/journal, no row
    missing_in_redis: list[str] = field(default_factory=list)  # row holds a seat Redis does not know
    repaired: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.missing_in_pg or self.missing_in_redis or self.problems or not self.redis_ready)


def _journal_open_reservations(slot: Slot) -> dict[str, dict]:
    """Reservations in the day's journal for this slot that no later release undid, by code."""
    entries: dict[str, dict] = {}
    for _id, fields in get_redis().xrange(slot_keys(slot.pk, slot.war_day).journal):
        if fields.get("slot") != str(slot.pk):
            continue
        if fields["op"] == "reserve":
            entries[fields["code"]] = fields
        else:
            entries.pop(fields["code"], None)
    return entries


def check_slot(slot: Slot, *, grace_ms: int = 5000) -> SlotReport:
    r = get_redis()
    keys = slot_keys(slot.pk, slot.war_day)
    report = SlotReport(slot)
    pg = {
        code: (user_id, number)
        for code, user_id, number in Ticket.objects.filter(slot=slot, status__in=Ticket.HOLDING).values_list(
            "code", "user_id", "queue_number"
        )
    }
    report.pg_holding = len(pg)
    meta = r.hmget(keys.slot, "quota", "sold")
    if meta[0] is None:
        report.redis_ready = False
        report.problems.append("Redis has no state for this slot (run sync_quota)")
        return report
    report.redis_quota, report.redis_sold = int(meta[0]), int(meta[1])

    cutoff = clock.redis_now_ms() - grace_ms
    redis_holders = {}
    for user_id, value in r.hgetall(keys.holders).items():
        number, code, ts, _committed = value.split("|")
        redis_holders[code] = {"user": user_id, "number": number, "code": code, "ts": ts}
    candidates = {**_journal_open_reservations(slot), **redis_holders}
    for code, entry in candidates.items():
        if code not in pg and int(entry["ts"]) <= cutoff:
            report.missing_in_pg.append(entry)
    report.missing_in_redis = [code for code in pg if code not in redis_holders]

    if report.redis_quota != slot.quota:
        report.problems.append(f"quota differs: PostgreSQL {slot.quota}, Redis {report.redis_quota}")
    if report.redis_sold != len(redis_holders):
        report.problems.append(f"Redis sold counter {report.redis_sold} but {len(redis_holders)} holders")
    return report


def repair_slot(report: SlotReport) -> SlotReport:
    """Write the rows a crash lost, then rebuild Redis from PostgreSQL if it still disagrees."""
    slot = report.slot
    for entry in report.missing_in_pg:
        try:
            Ticket.objects.get_or_create(
                code=entry["code"],
                defaults={
                    "slot": slot,
                    "user_id": int(entry["user"]),
                    "queue_number": int(entry["number"]),
                    "reserved_at": ms_to_datetime(entry["ts"]),
                },
            )
            report.repaired.append(entry["code"])
        except DatabaseError as exc:
            report.problems.append(f"could not restore {entry['code']}: {exc}")
            log.error("reconcile: could not restore %s: %s", entry["code"], exc)
    after = check_slot(slot)
    # Rebuild only for drift that rows cannot fix. A rebuild forgets reservations younger than the
    # grace period, so it is not done merely because something was restored.
    if after.missing_in_redis or after.problems or not after.redis_ready:
        quota.build(slot)
    return report


def reconcile(slots=None, *, repair: bool = False, grace_ms: int = 5000) -> list[SlotReport]:
    reports = []
    for slot in slots if slots is not None else quota.upcoming_slots():
        report = check_slot(slot, grace_ms=grace_ms)
        if repair and report.drift:
            repair_slot(report)
        reports.append(report)
    return reports
