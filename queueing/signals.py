"""Safety nets: location changes and slot deletions refresh the slot catalog after they commit.

Slot edits do not go through signals: ``queueing.services.slots.save`` fences Redis before the commit
and applies the edit after it (see there); heal and reconcile catch anything that bypasses it
(``QuerySet.update()``, raw SQL).
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from queueing.models import Location, Slot
from queueing.services import catalog


@receiver([post_save, post_delete], sender=Location)
@receiver(post_delete, sender=Slot)
def catalog_changed(sender, raw=False, **kwargs):
    if not raw:
        transaction.on_commit(catalog.rebuild)
