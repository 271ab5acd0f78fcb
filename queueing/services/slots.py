"""Creating and changing slots: the one way a slot edit reaches Redis (admin, commands, demo data).

The danger is a war that opens at a time PostgreSQL no longer holds: staff postpone a war by an hour,
PostgreSQL commits the new time, Redis keeps the old one (it was paused, failing over, unreachable)
and at the old time the war opens. So an edit of a slot Redis already knows goes:
1. *fence*: mark the slot ``pending`` in Redis. reserve.lua answers ``not_ready`` for a pending slot,
   so from here until step 3 nobody is admitted on either time. If Redis cannot take the mark, the
   edit is refused (the outage answer, 503) and nothing is written;
2. commit the edit in PostgreSQL;
3. after the commit, write the new quota and times to Redis, which lifts the mark (set_quota.lua).
If step 3 fails, or the transaction rolls back, the mark stays and the slot keeps answering
``not_ready`` until self-heal (services/heal.py) applies what PostgreSQL holds. Redis never serves the
old time after PostgreSQL has the new one.
"""

from __future__ import annotations

import logging

from django.db import transaction

from queueing.models import Slot
from queueing.services import catalog, quota
from queueing.services.store import slot_keys
from wartiket.outages import REDIS_OUTAGES
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)

# A pending mark younger than this may belong to an edit still committing: heal and reconcile leave it
# alone; an older one is an edit whose Redis step never happened, finished from PostgreSQL.
PENDING_STALE_MS = 5_000

# Marks the slot pending with Redis' own clock, so heal can tell a stuck edit from one still committing.
_FENCE = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'pending', string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
return 1
"""


def fence(slot_id: int, day: str) -> None:
    """Make Redis refuse the slot until its edit is applied. Raises a Redis outage error if it cannot."""
    get_redis().eval(_FENCE, 1, slot_keys(slot_id, day).slot)


def save(slot: Slot) -> None:
    """Create or change ``slot`` in PostgreSQL and Redis (see the module docstring for the order)."""
    old_day = None
    if slot.pk is not None:
        old_day = Slot.objects.filter(pk=slot.pk).values_list("date", flat=True).first()
    if old_day is not None:
        fence(slot.pk, old_day.isoformat())
    slot._saved_by_service = True  # the post_save safety net (queueing/signals.py) need not apply it again
    try:
        with transaction.atomic():
            slot.save()
            transaction.on_commit(lambda: apply(slot.pk, old_day))
    finally:
        del slot._saved_by_service


def apply(slot_id: int, old_day=None) -> None:
    """After the commit: bring Redis up to PostgreSQL for this slot (and the day it left, if it moved)."""
    try:
        slot = Slot.objects.select_related("location").get(pk=slot_id)
        if old_day is not None and old_day != slot.date:
            # The slot moved to another war day: both days' person hashes change, so both are rebuilt.
            quota.build_day(old_day)
            quota.build_day(slot.date)
        else:
            quota.sync(slot)
        catalog.rebuild()
    except REDIS_OUTAGES as exc:
        # The fence stays: the slot answers not_ready until heal applies PostgreSQL's values.
        log.warning("slot %s saved in PostgreSQL; Redis not updated yet (%r): self-heal will", slot_id, exc)
