"""Staff edits to slots and locations reach Redis by themselves (after the edit commits)."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from queueing.models import Location, Slot
from queueing.services import catalog, quota


@receiver(post_save, sender=Slot)
def slot_saved(sender, instance, raw=False, **kwargs):
    if raw:
        return

    def apply():
        quota.sync(Slot.objects.select_related("location").get(pk=instance.pk))
        catalog.rebuild()

    transaction.on_commit(apply)


@receiver([post_save, post_delete], sender=Location)
@receiver(post_delete, sender=Slot)
def catalog_changed(sender, raw=False, **kwargs):
    if not raw:
        transaction.on_commit(catalog.rebuild)
