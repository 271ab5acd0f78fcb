"""Safety nets: changes made without the services still reach Redis after they commit.

Slot edits belong in ``queueing.services.slots.save``, which fences Redis before the commit and applies
the edit after it (see there). A plain ``slot.save()`` elsewhere is applied here after its commit (without
the fence); ``QuerySet.update()`` and raw SQL send no signal at all, and heal's sweep (every few seconds)
and reconcile (every minute) find the difference and apply PostgreSQL's values.
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from queueing.models import Location, Slot
from queueing.services import catalog, draws, slots


@receiver(post_save, sender=Slot)
def slot_saved(sender, instance, raw=False, **kwargs):
    if raw or getattr(instance, "_saved_by_service", False):
        return
    slot_id = instance.pk
    transaction.on_commit(lambda: slots.apply(slot_id))


@receiver(post_save, sender=Slot)
def draw_committed(sender, instance, raw=False, **kwargs):
    """A draw slot gets its Draw (seed and published commitment) when it becomes one, however it is saved,
    so the commitment is public before the entry window opens. (Also created lazily, as a safety net.)"""
    if not raw and instance.is_draw:
        draws.ensure_draw(instance.pk)


@receiver([post_save, post_delete], sender=Location)
@receiver(post_delete, sender=Slot)
def catalog_changed(sender, raw=False, **kwargs):
    if not raw:
        transaction.on_commit(catalog.rebuild)
