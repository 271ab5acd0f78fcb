"""Building and changing a slot's Redis state from PostgreSQL (``sync_quota``, staff edits).

PostgreSQL is the truth. A slot whose keys are missing is rebuilt from its tickets; a slot whose keys
exist gets only its quota and war times updated (set_quota.lua), because rebuilding a live war from
PostgreSQL would forget reservations that Redis has assigned but PostgreSQL has not committed yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from queueing.models import Slot, Ticket
from queueing.services import catalog
from queueing.services.store import datetime_to_ms, script, slot_keys
from wartiket.redis_client import get_redis


class QuotaError(Exception):
    """A quota change that would take away seats already handed out."""

    @classmethod
    def below_issued(cls, quota, number) -> QuotaError:
        return cls(
            _("Kuota tidak bisa diturunkan ke %(quota)s: nomor antrean sampai %(number)s sudah diberikan.")
            % {"quota": quota, "number": number}
        )


@dataclass(frozen=True)
class SyncResult:
    slot_id: int
    action: str  # "built" or "updated"
    remaining: int
    version: int


def _meta(slot: Slot) -> list:
    return [slot.quota, datetime_to_ms(slot.war_opens_at), datetime_to_ms(slot.closes_at)]


def build(slot: Slot) -> SyncResult:
    """Replace the slot's Redis state with what PostgreSQL holds (every holding ticket)."""
    keys = slot_keys(slot.pk, slot.war_day)
    args = [*_meta(slot), slot.pk]
    for user_id, number, code, reserved_at in Ticket.objects.filter(slot=slot, status__in=Ticket.HOLDING).values_list(
        "user_id", "queue_number", "code", "reserved_at"
    ):
        args += [user_id, number, code, datetime_to_ms(reserved_at)]
    _now, remaining, version = script("build")(keys=[keys.slot, keys.free, keys.holders, keys.day], args=args)
    return SyncResult(slot.pk, "built", int(remaining), int(version))


def sync(slot: Slot, *, rebuild: bool = False) -> SyncResult:
    if rebuild:
        return build(slot)
    keys = slot_keys(slot.pk, slot.war_day)
    reply = script("set_quota")(keys=[keys.slot, keys.free], args=_meta(slot))
    if reply[0] == "not_ready":
        return build(slot)
    if reply[0] == "below_issued":
        raise QuotaError.below_issued(slot.quota, reply[2])
    return SyncResult(slot.pk, "updated", int(reply[2]), int(reply[3]))


def sync_all(slots=None, *, rebuild: bool = False) -> list[SyncResult]:
    """Sync every slot still resolvable (or the given ones), then the catalog."""
    if slots is None:
        slots = upcoming_slots()
    results = [sync(slot, rebuild=rebuild) for slot in slots]
    catalog.rebuild()
    return results


def upcoming_slots():
    cutoff = timezone.now() - catalog.KEEP_AFTER_CLOSE
    return [s for s in Slot.objects.select_related("location").filter(date__gte=cutoff.date()) if s.closes_at >= cutoff]


def highest_held_number(slot: Slot) -> int:
    """The highest queue number held, by PostgreSQL or by Redis (which may be ahead of it)."""
    in_db = Ticket.objects.filter(slot=slot, status__in=Ticket.HOLDING).aggregate(m=Max("queue_number"))["m"] or 0
    keys = slot_keys(slot.pk, slot.war_day)
    in_redis = 0
    for value in get_redis().hvals(keys.holders):
        in_redis = max(in_redis, int(value.split("|", 1)[0]))
    return max(in_db, in_redis)


def check_quota_change(slot: Slot, new_quota: int) -> None:
    """For forms: refuse early, with a clear message, a quota below a number already handed out."""
    if slot.pk is None:
        return
    highest = highest_held_number(slot)
    if new_quota < highest:
        raise QuotaError.below_issued(new_quota, highest)


def remaining_for(slots) -> dict[int, int | None]:
    """Live remaining per slot id from Redis, in one round trip; None where Redis has no state."""
    slots = list(slots)
    pipe = get_redis().pipeline(transaction=False)
    for slot in slots:
        pipe.hmget(slot_keys(slot.pk, slot.war_day).slot, "quota", "sold")
    result = {}
    for slot, (quota, sold) in zip(slots, pipe.execute(), strict=True):
        result[slot.pk] = None if quota is None else int(quota) - int(sold)
    return result
