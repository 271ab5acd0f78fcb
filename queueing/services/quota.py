"""Building and changing a slot's Redis state from PostgreSQL (``sync_quota``, staff edits).

PostgreSQL is the truth. A slot whose keys are missing has its whole war day rebuilt from the tickets
(build_day.lua); a slot whose keys exist gets only its quota and war times updated (set_quota.lua),
because rebuilding a live war from PostgreSQL would forget reservations that Redis has assigned but
PostgreSQL has not committed yet.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Max
from django.utils.translation import gettext as _

from queueing.models import Draw, DrawEntry, Slot, Ticket
from queueing.services import catalog
from queueing.services.store import datetime_to_ms, day_keys, script, slot_keys
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


def slot_meta(slot: Slot) -> list[int]:
    """Quota, opening and closing (epoch ms) as Redis keeps them."""
    return [slot.quota, datetime_to_ms(slot.war_opens_at), datetime_to_ms(slot.closes_at)]


def _ticket_args(tickets) -> list:
    args = []
    for user_id, person, number, code, reserved_at, one_per_day in tickets:
        args += [user_id, person, number, code, datetime_to_ms(reserved_at), "1" if one_per_day else "0"]
    return args


# A holding ticket as build_day.lua / merge.lua take it (with ``_ticket_args``).
TICKET_FIELDS = ("user_id", "person", "queue_number", "code", "reserved_at", "one_per_day")


def holding_tickets(**filters):
    """Holding tickets, lowest number first (the order merge.lua needs)."""
    return Ticket.objects.filter(status__in=Ticket.HOLDING, **filters).order_by("queue_number")


def draw_field(slot: Slot, drawn: bool) -> str:
    """The slot hash's ``draw`` field as PostgreSQL sees it: "" first come first served, the draw time
    (ms) while undrawn, "done" once drawn (reserve.lua refuses a draw slot until it reads "done")."""
    if not slot.is_draw:
        return ""
    return "done" if drawn else str(datetime_to_ms(slot.draw_at))


def waitlist_args(slot_ids) -> dict[int, list]:
    """Waiting entrants per drawn slot, as build_day.lua / draw_apply.lua take them (person, position)."""
    by_slot: dict[int, list] = {slot_id: [] for slot_id in slot_ids}
    waiting = DrawEntry.objects.filter(slot_id__in=slot_ids, outcome=DrawEntry.Outcome.WAITING)
    for slot_id, person, position in waiting.values_list("slot_id", "person", "waitlist_position"):
        by_slot[slot_id] += [person, position]
    return by_slot


def build_day(day: datetime.date | str) -> int:
    """Replace one war day's Redis state (every slot of that date and its person hash) with PostgreSQL's.

    Only for a day Redis cannot be trusted on (restarted empty or from an old dump, a slot it never
    knew): it forgets reservations assigned in Redis but not yet committed. Returns the slots built.
    """
    day = day if isinstance(day, str) else day.isoformat()
    slots = list(Slot.objects.select_related("location").filter(date=day).order_by("pk"))
    by_slot: dict[int, list] = {slot.pk: [] for slot in slots}
    for slot_id, *row in holding_tickets(slot__date=day).values_list("slot_id", *TICKET_FIELDS):
        by_slot[slot_id].append(row)
    # Draw slots keep their draw state and waiting list through a rebuild (a flush after the draw).
    drawn = set(Draw.objects.filter(slot__in=slots, drawn_at__isnull=False).values_list("slot_id", flat=True))
    waitlists = waitlist_args(drawn)
    day_key, _journal = day_keys(day)
    keys, args = [day_key], [len(slots)]
    for slot in slots:
        slot_keys_ = slot_keys(slot.pk, day)
        keys += [slot_keys_.slot, slot_keys_.free, slot_keys_.holders, slot_keys_.waitlist]
        args += [slot.pk, *slot_meta(slot), draw_field(slot, slot.pk in drawn)]
        args += [len(by_slot[slot.pk]), *_ticket_args(by_slot[slot.pk])]
        wait = waitlists.get(slot.pk, [])
        args += [len(wait) // 2, *wait]
    script("build_day")(keys=keys, args=args)
    return len(slots)


def sync(slot: Slot, *, rebuild: bool = False) -> SyncResult:
    """Bring Redis' quota and war times of ``slot`` up to PostgreSQL's (and lift a pending edit's mark).

    A slot Redis does not know yet (or ``rebuild``) has its whole war day rebuilt.
    """
    keys = slot_keys(slot.pk, slot.war_day)
    if not rebuild:
        # Undrawn as far as this step knows: set_quota.lua never undoes a "done" the draw itself wrote.
        draw = draw_field(slot, drawn=False)
        reply = script("set_quota")(keys=[keys.slot, keys.free], args=[*slot_meta(slot), draw])
        if reply[0] == "below_issued":
            raise QuotaError.below_issued(slot.quota, reply[2])
        if reply[0] == "ok":
            return SyncResult(slot.pk, "updated", int(reply[2]), int(reply[3]))
    build_day(slot.war_day)
    quota_, sold, version = get_redis().hmget(keys.slot, "quota", "sold", "ver")
    return SyncResult(slot.pk, "built", int(quota_) - int(sold), int(version))


def sync_all(slots=None, *, rebuild: bool = False) -> list[SyncResult]:
    """Sync every slot still resolvable (or the given ones), then the catalog."""
    if slots is None:
        slots = upcoming_slots()
    if rebuild:
        # One rebuild per war day, not per slot: the day is build_day's unit.
        for day in sorted({slot.war_day for slot in slots}):
            build_day(day)
    results = [sync(slot) for slot in slots]
    catalog.rebuild()
    return results


def upcoming_slots() -> list[Slot]:
    """Every slot whose Redis state is kept (``Slot.objects.upcoming()``), at any location: a war day's
    state holds all its slots (build_day.lua), deactivated boutiques' included. Buyers' lists filter more."""
    return list(Slot.objects.select_related("location").upcoming())


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
