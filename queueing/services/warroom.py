"""The war room's figures: per slot remaining, tickets, requests per second by outcome, time since open.

Counting costs the war endpoint nothing on its success path. reserve.lua counts every outcome it
decides into the slot's ``{w:D}:slot:<id>:stats`` hash inside the same call; requests refused before
or outside the script (bad input, authentication, an outage) are counted by the view on its error
path only (``count_error``), in one site-wide hash. Rates are differences of those counters between
samples, taken by whoever is watching (the war-room socket, ``war_status --watch``): when nobody
watches, nothing runs.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from django.db.models import Count
from django.utils import timezone

from queueing.models import Draw, Slot, Ticket
from queueing.services import live, reconcile
from queueing.services.store import datetime_to_ms, ms_to_datetime, slot_keys
from wartiket.outages import REDIS_OUTAGES
from wartiket.redis_client import get_redis

# What reserve.lua counts, in the order the war room shows them.
OUTCOMES = ("reserved", "too_early", "sold_out", "already_reserved", "one_per_day", "rate_limited", "closed")
# Draw entries (enter.lua) and proofs of work spent twice (reserve.lua, enter.lua): bots replaying one
# solution show here.
OUTCOMES = (*OUTCOMES, "entered", "challenge_invalid")
# Outcomes of the script that mean something is wrong with the slot's Redis state.
SLOT_ERRORS = ("not_ready", "drift")
SHOWN = (*OUTCOMES, "errors")
ERRORS_KEY = "war:errors"
# Rates compare the newest sample with the one about this much older.
RATE_WINDOW_MS = 1000
HISTORY = 240

# Errors that could not be counted because Redis was down; added on the next error after it is back.
_pending: Counter = Counter()
_pending_lock = threading.Lock()
_retry_at = 0.0
# While Redis is down, counting must not add a connect timeout to every error answer.
RETRY_SECONDS = 5.0


def count_error(code: str) -> None:
    """Count one war request refused outside reserve.lua (never called on the success path)."""
    global _retry_at
    with _pending_lock:
        _pending[code] += 1
        if time.monotonic() < _retry_at:
            return
        batch = dict(_pending)
        _pending.clear()
    try:
        pipe = get_redis().pipeline(transaction=False)
        for name, count in batch.items():
            pipe.hincrby(ERRORS_KEY, name, count)
        pipe.execute()
    except REDIS_OUTAGES:
        with _pending_lock:
            _pending.update(batch)
            _retry_at = time.monotonic() + RETRY_SECONDS


def todays_slots(now: datetime.datetime | None = None) -> list[Slot]:
    """Slots whose war opens today (local time) or is open right now, by opening."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    start = datetime.datetime.combine(today, datetime.time(), tzinfo=timezone.get_current_timezone())
    end = start + datetime.timedelta(days=1)
    candidates = Slot.objects.select_related("location").filter(war_opens_at__lt=end, date__gte=today)
    return sorted(
        (s for s in candidates if s.war_opens_at >= start or s.is_open_at(now)),
        key=lambda s: (s.war_opens_at, s.location.name, s.time_label),
    )


@dataclass
class _Reading:
    at_ms: int
    counts: dict[int, dict[str, int]]  # slot id -> outcome -> count (SHOWN)
    errors: dict[str, int]


@dataclass
class Sampler:
    """Reads the figures of some slots (or today's) and turns successive readings into rates.

    One per watcher: it keeps its own short history, so watchers never share state or coordinate.
    """

    slot_ids: list[int] | None = None  # None: today's slots, re-listed every ``relist_seconds``
    relist_seconds: float = 2.0
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))
    _slots: list[Slot] = field(default_factory=list)
    _listed_at: float = float("-inf")

    def slots(self) -> list[Slot]:
        if self.slot_ids is not None:
            if not self._slots:
                found = Slot.objects.select_related("location").in_bulk(self.slot_ids)
                self._slots = [found[i] for i in self.slot_ids if i in found]
            return self._slots
        if time.monotonic() - self._listed_at >= self.relist_seconds:
            self._slots = todays_slots()
            self._listed_at = time.monotonic()
        return self._slots

    def sample(self) -> dict:
        """One reading (one Redis round trip, one PostgreSQL query) as the war room's JSON."""
        slots = self.slots()
        pipe = get_redis().pipeline(transaction=False)
        pipe.time()
        for slot in slots:
            keys = slot_keys(slot.pk, slot.war_day)
            pipe.hmget(keys.slot, "quota", "sold", "opens", "closes")
            pipe.hgetall(keys.stats)
            pipe.scard(keys.entrants)  # draw mode: entries so far (0 for first come, first served)
            pipe.hlen(keys.waitlist)
        pipe.hgetall(ERRORS_KEY)
        pipe.get(reconcile.LAST_CHECK_KEY)
        (seconds, micros), *rows, errors, last_check = pipe.execute()
        now_ms = seconds * 1000 + micros // 1000
        tickets = dict(
            Ticket.objects.filter(slot__in=[s.pk for s in slots], status__in=Ticket.HOLDING)
            .values_list("slot_id")
            .annotate(n=Count("id"))
        )
        # Draw mode's figures (services/draws.py records them on the Draw row); a query only if there are draws.
        draw_ids = [s.pk for s in slots if s.is_draw]
        draws = {d.slot_id: d for d in Draw.objects.filter(slot_id__in=draw_ids)} if draw_ids else {}
        reading = _Reading(now_ms, {}, {k: int(v) for k, v in errors.items()})
        figures = []
        for index, slot in enumerate(slots):
            (quota, sold, opens, closes), stats, entrants, waiting = rows[4 * index : 4 * index + 4]
            stats = {k: int(v) for k, v in stats.items()}
            counts = {name: stats.get(name, 0) for name in OUTCOMES}
            counts["errors"] = sum(stats.get(name, 0) for name in SLOT_ERRORS)
            reading.counts[slot.pk] = counts
            opens_ms = int(opens) if opens else datetime_to_ms(slot.war_opens_at)
            closes_ms = int(closes) if closes else datetime_to_ms(slot.closes_at)
            remaining = None if quota is None else int(quota) - int(sold or 0)
            figures.append(
                {
                    "id": slot.pk,
                    "name": str(slot),
                    "location": slot.location.name,
                    "date": slot.date.isoformat(),
                    "time_label": slot.time_label,
                    "quota": slot.quota,
                    "remaining": remaining,
                    "tickets": tickets.get(slot.pk, 0),
                    "opens_ms": opens_ms,
                    "state": live.slot_state(
                        now_ms=now_ms, opens_ms=opens_ms, closes_ms=closes_ms, remaining=remaining
                    ),
                    "since_open_ms": now_ms - opens_ms,
                    "counts": counts,
                    "draw": _draw_figures(draws.get(slot.pk), entrants, waiting) if slot.is_draw else None,
                }
            )
        before = self._reading_before(now_ms - RATE_WINDOW_MS)
        self.history.append(reading)
        for item in figures:
            item["rates"] = _rates(item["counts"], before.counts.get(item["id"]) if before else None, before, now_ms)
        error_rates = _rates(reading.errors, before.errors if before else None, before, now_ms)
        return {
            "type": "figures",
            "server_ms": now_ms,
            "server_time": ms_to_datetime(now_ms).isoformat(),
            "slots": figures,
            "errors": {
                "counts": reading.errors,
                "rates": error_rates,
                "rate": None if before is None else round(sum(error_rates.values()), 1),
            },
            "consistency": consistency(last_check, now_ms),
        }

    def _reading_before(self, at_ms: int) -> _Reading | None:
        """The newest reading at least a rate window old (else the oldest one, if any)."""
        chosen = None
        for reading in self.history:
            if reading.at_ms <= at_ms:
                chosen = reading
        return chosen or (self.history[0] if self.history else None)


def _draw_figures(draw: Draw | None, entrants: int, waiting: int) -> dict:
    """Entrants (Redis, live), the waiting list, and once drawn how long it took and how late it finished."""
    drawn = draw is not None and draw.is_drawn
    return {
        "entrants": draw.entrants if drawn else entrants,
        "waiting": waiting,
        "drawn": drawn,
        "duration_ms": draw.duration_ms if drawn else None,
        "draw_at_to_committed_ms": draw.lag_ms if drawn else None,
    }


def consistency(raw: str | None, now_ms: int) -> dict:
    """The latest reconcile check (Celery beat, every WAR_RECONCILE_INTERVAL s) as the war room shows it."""
    if not raw:
        return {"checked_ago_s": None, "slots": 0, "drift": []}
    check = json.loads(raw)
    return {
        "checked_ago_s": round((now_ms - check["at_ms"]) / 1000),
        "slots": check["checked"],
        "drift": check["drift"],
    }


def _rates(now: dict[str, int], then: dict[str, int] | None, before: _Reading | None, now_ms: int) -> dict:
    if before is None or now_ms <= before.at_ms:
        return {name: None for name in now}
    seconds = (now_ms - before.at_ms) / 1000
    then = then or {}
    rates = {}
    for name, value in now.items():
        delta = value - then.get(name, 0)
        # A counter that went down was reset (its slot's Redis state rebuilt): it counts from zero again.
        rates[name] = round((delta if delta >= 0 else value) / seconds, 1)
    return rates
