"""Celery tasks of the war engine: thin wrappers around services/heal.py and services/reconcile.py."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from queueing.services import heal, reconcile


@shared_task(name="queueing.heal", ignore_result=True)
def heal_task() -> None:
    """Rebuild Redis from PostgreSQL if it restarted empty or stale; finish stuck staff edits."""
    heal.periodic()
    heal.periodic_sweep()


@shared_task(name="queueing.reconcile", ignore_result=True)
def reconcile_task() -> None:
    """Compare PostgreSQL with Redis for every upcoming slot; record the result; repair what is safe."""
    reconcile.record(reconcile.reconcile(repair=settings.WAR_RECONCILE_REPAIR))
