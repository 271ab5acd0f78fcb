"""What ``/status`` reports: is the backend reachable, and which wars come next with live remaining.

Reads the same sources as the web: Redis for the server clock and live remaining (``quota.remaining_for``),
PostgreSQL for the slots (``Slot.objects.visible()``, as buyers see them). Either being down is reported, never raised.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.db import DatabaseError, connection
from django.utils import timezone

from queueing.models import Slot
from queueing.services import clock, quota
from wartiket.outages import REDIS_OUTAGES
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Health:
    redis: bool
    postgres: bool

    @property
    def online(self) -> bool:
        return self.redis and self.postgres


@dataclass(frozen=True)
class War:
    slot_id: int
    location: str
    date: datetime.date
    time_label: str
    opens_at: datetime.datetime
    quota: int
    remaining: int | None  # None: Redis holds no state for it (yet)
    is_open: bool


def health() -> Health:
    try:
        redis_ok = bool(get_redis().ping())
    except REDIS_OUTAGES:
        redis_ok = False
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            postgres_ok = cursor.fetchone() == (1,)
    except DatabaseError:
        postgres_ok = False
    return Health(redis=redis_ok, postgres=postgres_ok)


def server_now() -> datetime.datetime:
    try:
        return clock.redis_now()
    except REDIS_OUTAGES:
        return timezone.now()


def next_wars(now: datetime.datetime, limit: int = 5) -> list[War]:
    """Wars not yet closed, soonest first."""
    try:
        slots = list(
            Slot.objects.visible().closing_after(now).order_by("war_opens_at", "location__name", "time_label")[:limit]
        )
    except DatabaseError:
        log.warning("status: PostgreSQL unavailable, no wars listed")
        return []
    try:
        remaining = quota.remaining_for(slots)
    except REDIS_OUTAGES:
        remaining = {}
    return [
        War(
            slot_id=s.pk,
            location=s.location.name,
            date=s.date,
            time_label=s.time_label,
            opens_at=s.war_opens_at,
            quota=s.quota,
            remaining=remaining.get(s.pk),
            is_open=s.is_open_at(now),
        )
        for s in slots
    ]
