"""Which slot a war request means, answered from Redis.

``war:catalog`` maps "location|HH:MM" to that label's slots and "id:<slot id>" to one slot, so resolving
the seed's body ``{"location_id": …, "time_slot": …}`` costs no PostgreSQL query. It is rebuilt from
PostgreSQL whenever a slot or location changes. A missing catalog (Redis restarted empty) answers
``not_ready``, never "unknown slot".
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict, dataclass

from queueing.models import Slot
from queueing.services import clock
from queueing.services.errors import ReservationError
from queueing.services.store import datetime_to_ms
from wartiket.redis_client import get_redis

CATALOG_KEY = "war:catalog"
BUILT_FIELD = "__built__"
LOCAL_TTL = 1.0


@dataclass(frozen=True)
class SlotRef:
    id: int
    location: str
    location_name: str
    date: str
    time_label: str
    opens_ms: int
    closes_ms: int
    # Draw mode and the anti-bot challenge, so the war path decides them without PostgreSQL.
    allocation: str = "fcfs"
    entry_opens_ms: int = 0
    draw_ms: int = 0
    challenge: str = "off"

    @property
    def day(self) -> str:
        return self.date

    @property
    def is_draw(self) -> bool:
        return self.allocation == "draw"


def ref_for(slot: Slot) -> SlotRef:
    return SlotRef(
        id=slot.pk,
        location=slot.location.slug,
        location_name=slot.location.name,
        date=slot.date.isoformat(),
        time_label=slot.time_label,
        opens_ms=datetime_to_ms(slot.war_opens_at),
        closes_ms=datetime_to_ms(slot.closes_at),
        allocation=slot.allocation,
        entry_opens_ms=datetime_to_ms(slot.entry_opens_at) if slot.is_draw else 0,
        draw_ms=datetime_to_ms(slot.draw_at) if slot.is_draw else 0,
        challenge=slot.challenge,
    )


def rebuild() -> int:
    """Write the whole catalog from PostgreSQL in one transaction. Returns the number of slots."""
    slots = list(Slot.objects.resolvable().upcoming())
    by_label: dict[str, list[dict]] = {}
    fields = {BUILT_FIELD: "1"}
    for slot in slots:
        ref = asdict(ref_for(slot))
        by_label.setdefault(f"{slot.location.slug}|{slot.time_label}", []).append(ref)
        fields[f"id:{slot.pk}"] = json.dumps(ref)
    for label, refs in by_label.items():
        fields[label] = json.dumps(sorted(refs, key=lambda r: r["date"]))
    pipe = get_redis().pipeline(transaction=True)
    pipe.delete(CATALOG_KEY)
    pipe.hset(CATALOG_KEY, mapping=fields)
    pipe.execute()
    _local.clear()
    return len(slots)


_local: dict[str, tuple[float, object]] = {}


def _fetch(field: str):
    """HGET with a one-second per-process cache: during a war every request asks the same question."""
    hit = _local.get(field)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    pipe = get_redis().pipeline(transaction=False)
    pipe.hget(CATALOG_KEY, field)
    pipe.hexists(CATALOG_KEY, BUILT_FIELD)
    raw, built = pipe.execute()
    if not built:
        raise ReservationError("not_ready", retry_after=2)
    value = json.loads(raw) if raw else None
    _local[field] = (time.monotonic() + LOCAL_TTL, value)
    return value


def resolve(location: str, time_label: str, date: datetime.date | None = None) -> SlotRef:
    refs = _fetch(f"{location}|{time_label}")
    if not refs:
        raise ReservationError("unknown_slot")
    if date is not None:
        for ref in refs:
            if ref["date"] == date.isoformat():
                return SlotRef(**ref)
        raise ReservationError("unknown_slot")
    # Default: the nearest slot whose war is not over. The estimate only picks; the script decides.
    now_ms = clock.estimated_now_ms()
    for ref in refs:
        if ref["closes_ms"] > now_ms:
            return SlotRef(**ref)
    return SlotRef(**refs[-1])


def by_id(slot_id: int) -> SlotRef | None:
    ref = _fetch(f"id:{slot_id}")
    return SlotRef(**ref) if ref else None
