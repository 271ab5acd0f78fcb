"""War days' Redis keys expire once the day is over (Celery beat: ``queueing.expire_war_days``, hourly).

Every key of a war day carries the tag ``{w:YYYY-MM-DD}`` (``store.day_tag``) and nothing in the Lua
scripts gives them a lifetime, so without this they would pile up for ever. A war day is *over* when
none of its slots is ``upcoming`` any more (``Slot.objects.upcoming()``: every war of the day closed more
than ``KEEP_AFTER_CLOSE`` ago), so nothing resolves, heals or reconciles it and no script writes its keys
again. Its keys are then given ``EXPIREAT`` the end of the day plus ``WAR_DAY_KEYS_KEEP_DAYS`` (3) days:
long enough to look into a war after it (``reconcile``, ``war_status``, the journal), never for ever.
PostgreSQL keeps the tickets; Redis only held the war's working state.

Each run finds the day's keys with ``SCAN MATCH {w:<day>}:*`` (never ``KEYS``) and sets the same moment
again, so a key written late gets it too. A day whose moment has passed (its keys are gone) is recorded in
``war:days:expired`` and not scanned again.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from queueing.models import Slot
from queueing.services.store import day_tag
from wartiket.redis_client import get_redis

DONE_KEY = "war:days:expired"
SCAN_COUNT = 1000


@dataclass(frozen=True)
class DayExpiry:
    day: str
    expire_at: datetime.datetime
    keys: int


def expire_at(day: datetime.date) -> datetime.datetime:
    """When a war day's keys go: the end of the day (midnight after it, local) plus the margin."""
    end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), timezone.get_default_timezone())
    return end + datetime.timedelta(days=settings.WAR_DAY_KEYS_KEEP_DAYS)


def days_over(now: datetime.datetime | None = None) -> list[datetime.date]:
    """War days PostgreSQL knows that are over: before today, and none of their slots still upcoming."""
    now = now or timezone.now()
    today = timezone.localtime(now).date()
    current = Slot.objects.upcoming(now).values("date")
    days = Slot.objects.filter(date__lt=today).exclude(date__in=current).values_list("date", flat=True)
    return sorted(set(days))


def expire_war_days(now: datetime.datetime | None = None) -> list[DayExpiry]:
    """Give every key of every war day that is over its ``EXPIREAT``. Returns what was done per day."""
    now = now or timezone.now()
    r = get_redis()
    done = set(r.smembers(DONE_KEY))
    results = []
    for day in days_over(now):
        if day.isoformat() in done:
            continue
        moment = expire_at(day)
        seconds = int(moment.timestamp())
        count = 0
        pipe = r.pipeline(transaction=False)
        for key in r.scan_iter(match=f"{day_tag(day.isoformat())}:*", count=SCAN_COUNT):
            pipe.expireat(key, seconds)
            count += 1
        pipe.execute()
        if moment <= now:
            r.sadd(DONE_KEY, day.isoformat())
        results.append(DayExpiry(day.isoformat(), moment, count))
    return results
