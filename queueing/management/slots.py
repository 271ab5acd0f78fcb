"""What the operator commands share: slot ids from the command line, checked."""

from __future__ import annotations

from django.core.management.base import CommandError

from queueing.models import Slot


def slots_by_id(ids: list[int]) -> list[Slot]:
    """The slots with these ids (location joined); an unknown id is an error, never silently skipped."""
    found = list(Slot.objects.select_related("location").filter(pk__in=ids))
    missing = sorted(set(ids) - {slot.pk for slot in found})
    if missing:
        raise CommandError(f"no slot with id {', '.join(map(str, missing))}; `manage.py war_status` lists them")
    return found
