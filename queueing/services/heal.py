"""Redis heals itself from PostgreSQL, with no operator step.

Redis holds the hot state of every war, but it can lose it: a restart empty, a restart from an older
dump (``appendfsync everysec`` allows one), a failover to a replica that lagged, a flush. Any of these
changes what Redis knows without telling us. So Redis carries a *generation* (``war:gen``): the
``run_id`` of the Redis server the state was built on. Redis gives every server start a new run_id,
and a dump restores the old generation with it, so "generation != this server's run_id" means "this
state was not built here: do not trust it", whether Redis is empty or stale.

Healing, by one process at a time (a Redis lock):
1. every upcoming slot is marked ``pending``: reserve.lua answers ``not_ready`` (503 + Retry-After)
   instead of deciding on state it cannot trust;
2. a short grace lets attempts that were already between Redis and PostgreSQL commit their rows;
3. each war day is rebuilt from PostgreSQL's tickets (build_day.lua), then the slot catalog;
4. the generation is written last: until then, every checker keeps seeing "not healed".

Who checks: ``live_quota`` every second, Celery beat every few seconds, and any request that meets
``not_ready`` (in a background thread, at most once a second per process). Whichever comes first heals.

A staff edit that never reached Redis leaves its slot ``pending`` (see services/slots.py); the sweep
here finishes such edits from PostgreSQL once they are older than ``slots.PENDING_STALE_MS``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from queueing.models import Slot
from queueing.services import catalog, clock, quota, reconcile, slots
from queueing.services.store import slot_keys
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)

GEN_KEY = "war:gen"
LOCK_KEY = "war:heal:lock"
# Longer than a rebuild of every upcoming day has ever taken; a holder that died frees it by expiry.
LOCK_MS = 60_000

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class HealResult:
    days: int
    slots: int
    reason: str


def server_id(r: redis.Redis) -> str:
    """This Redis server's run_id: new at every start, so a restored dump's generation never matches it."""
    return r.info("server")["run_id"]


def is_trusted(r: redis.Redis | None = None) -> bool:
    r = r or get_redis()
    return r.hget(GEN_KEY, "run_id") == server_id(r)


def check_and_heal(*, sweep: bool = True) -> HealResult | None:
    """Rebuild Redis from PostgreSQL if it was not built on this server; finish stale pending edits.

    Returns what was rebuilt, or None when nothing needed to be (or another process is at it).
    """
    r = get_redis()
    run_id = server_id(r)
    generation = r.hget(GEN_KEY, "run_id")
    if generation == run_id:
        if sweep:
            finish_pending_edits()
        return None
    token = secrets.token_hex(8)
    if not r.set(LOCK_KEY, token, nx=True, px=LOCK_MS):
        return None  # another process is healing; requests meanwhile answer not_ready
    try:
        # Another process may have finished healing between our look and the lock.
        if r.hget(GEN_KEY, "run_id") == run_id:
            return None
        reason = "Redis restarted from an older state" if generation else "Redis lost its state"
        return _rebuild(r, run_id, reason)
    finally:
        r.eval(_RELEASE_LOCK, 1, LOCK_KEY, token)


def _rebuild(r: redis.Redis, run_id: str, reason: str) -> HealResult:
    upcoming = quota.upcoming_slots()
    log.warning("heal: %s (generation differs from server %s): rebuilding from PostgreSQL", reason, run_id)
    started = time.monotonic()
    pipe = r.pipeline(transaction=False)
    for slot in upcoming:
        pipe.hset(slot_keys(slot.pk, slot.war_day).slot, "pending", 0)
    pipe.execute()
    # Attempts that passed reserve.lua just before the mark may still be committing their rows; the
    # rebuild must read PostgreSQL after them, or it would put their numbers back in the free set.
    time.sleep(settings.WAR_HEAL_GRACE_MS / 1000)
    days = sorted({slot.war_day for slot in upcoming})
    for day in days:
        quota.build_day(day)
    catalog.rebuild()
    r.hset(GEN_KEY, mapping={"run_id": run_id, "built_ms": clock.redis_now_ms(), "by": _me()})
    log.warning(
        "heal: rebuilt %d war day(s), %d slot(s) from PostgreSQL in %.1f s",
        len(days),
        len(upcoming),
        time.monotonic() - started,
    )
    return HealResult(len(days), len(upcoming), reason)


def wait_until_trusted(*, timeout: float) -> bool:
    """Wait for another process' rebuild to finish; True once Redis' state was built on this server."""
    deadline = time.monotonic() + timeout
    while not is_trusted():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def mark_built(r: redis.Redis | None = None) -> None:
    """Record that Redis' state comes from PostgreSQL on this server (tests: an empty Redis beside an
    empty database is such a state)."""
    r = r or get_redis()
    r.hset(GEN_KEY, mapping={"run_id": server_id(r), "built_ms": clock.redis_now_ms(), "by": _me()})


def finish_pending_edits() -> list[int]:
    """Apply PostgreSQL's values to slots whose edit never reached Redis.

    That is: stuck pending (the edit's process died or Redis failed after the commit), never synced (a new
    slot), or holding other quota or times than PostgreSQL (an edit that bypassed the service, e.g.
    ``QuerySet.update()``). Returns the ids of the slots it fixed.
    """
    r = get_redis()
    upcoming = quota.upcoming_slots()
    pipe = r.pipeline(transaction=False)
    for slot in upcoming:
        pipe.hmget(slot_keys(slot.pk, slot.war_day).slot, "pending", "quota", "opens", "closes", "draw")
    now_ms = clock.redis_now_ms()
    finished = []
    for slot, (mark, *known, draw) in zip(upcoming, pipe.execute(), strict=True):
        stuck = mark is not None and now_ms - int(mark) >= slots.PENDING_STALE_MS
        differs = mark is None and (known != [str(v) for v in quota.slot_meta(slot)] or not _draw_agrees(slot, draw))
        if stuck or differs:
            try:
                quota.sync(slot)
            except quota.QuotaError as exc:  # PostgreSQL's trigger makes this impossible; say so if not
                log.error("heal: slot %s: %s", slot.pk, exc)
                continue
            finished.append(slot.pk)
            log.warning("heal: slot %s: applied an edit that had not reached Redis", slot.pk)
    if finished:
        catalog.rebuild()
    return finished


def _draw_agrees(slot: Slot, draw: str | None) -> bool:
    """Redis' ``draw`` field fits PostgreSQL's allocation and draw time (a made draw's "done" always fits)."""
    expected = quota.draw_field(slot, drawn=False)
    return draw is None if expected == "" else draw in ("done", expected)


def periodic() -> HealResult | None:
    """One check for a loop (live_quota, Celery beat); starts on a fresh connection if the last one broke."""
    close_old_connections()
    try:
        return check_and_heal(sweep=False)
    except DatabaseError:
        connections.close_all()  # PostgreSQL went away: the next run reconnects
        raise


def periodic_sweep() -> list[int]:
    close_old_connections()
    try:
        return finish_pending_edits()
    except DatabaseError:
        connections.close_all()
        raise


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- Kicks from request handlers ------------------------------------------------------------------

_kick_lock = threading.Lock()
_last_kick: dict[object, float] = {}
KICK_INTERVAL = 1.0


def kick() -> None:
    """A request met not_ready: heal in the background (once a second per process at most)."""
    spawn("heal", lambda: check_and_heal(sweep=True))


def kick_reconcile(slot_id: int) -> None:
    """A request found Redis disagreeing with PostgreSQL on a slot: reconcile that slot in the background."""

    def run():
        slot = Slot.objects.select_related("location").filter(pk=slot_id).first()
        if slot is not None:
            reconcile.reconcile([slot], repair=True)

    spawn(("reconcile", slot_id), run)


def spawn(key, target) -> None:
    """Run ``target`` in a background thread, at most once a second per process and ``key``."""
    if not settings.WAR_SELF_HEAL:
        return
    now = time.monotonic()
    with _kick_lock:
        if now - _last_kick.get(key, -KICK_INTERVAL) < KICK_INTERVAL:
            return
        _last_kick[key] = now

    def run():
        try:
            target()
        except Exception as exc:  # a background repair must never take the process down
            log.warning("heal: background %s failed: %r", key, exc)
        finally:
            connections.close_all()  # this thread's connections only

    threading.Thread(target=run, name=f"war-heal-{key}", daemon=True).start()
