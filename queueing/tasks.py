"""Celery tasks of the war engine: thin wrappers around services/heal.py, reconcile.py and expiry.py."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from queueing.services import draws, expiry, heal, reconcile


@shared_task(name="queueing.heal", ignore_result=True)
def heal_task() -> None:
    """Rebuild Redis from PostgreSQL if it restarted empty or stale; finish stuck staff edits."""
    heal.periodic()
    heal.periodic_sweep()


@shared_task(name="queueing.draws", ignore_result=True)
def draws_task() -> list[int]:
    """Backstop for live_quota's 100 ms check: draw every draw slot whose draw time has come."""
    return draws.periodic()


@shared_task(name="queueing.reconcile", ignore_result=True)
def reconcile_task() -> None:
    """Compare PostgreSQL with Redis for every upcoming slot; record the result; repair what is safe."""
    reconcile.record(reconcile.reconcile(repair=settings.WAR_RECONCILE_REPAIR))


@shared_task(name="queueing.expire_war_days", ignore_result=True)
def expire_war_days_task() -> int:
    """Give the Redis keys of war days that are over their expiry; returns how many keys were touched."""
    return sum(day.keys for day in expiry.expire_war_days())
