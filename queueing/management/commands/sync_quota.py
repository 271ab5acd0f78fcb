from django.core.management.base import BaseCommand, CommandError

from queueing.models import Slot
from queueing.services import quota


class Command(BaseCommand):
    help = (
        "Build each slot's Redis state (quota, remaining, holders) from PostgreSQL, and the slot catalog. "
        "Run after Redis restarted empty (the war answers not_ready until then) or after editing slots "
        "outside the admin. Slots Redis already knows only get their quota and times updated, so it is "
        "safe during a live war; --rebuild replaces their state from PostgreSQL (only when no war is live)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--slot", type=int, action="append", help="Only this slot id (repeatable)")
        parser.add_argument("--rebuild", action="store_true", help="Rebuild existing slots from PostgreSQL too")

    def handle(self, *args, slot=None, rebuild=False, **options):
        slots = Slot.objects.select_related("location").filter(pk__in=slot) if slot else None
        if slot and len(slots) != len(set(slot)):
            raise CommandError(f"Unknown slot id in {slot}")
        try:
            results = quota.sync_all(slots, rebuild=rebuild)
        except quota.QuotaError as exc:
            raise CommandError(str(exc)) from exc
        for result in results:
            self.stdout.write(f"slot {result.slot_id}: {result.action}, remaining {result.remaining}")
        self.stdout.write(self.style.SUCCESS(f"Synced {len(results)} slot(s) and the catalog."))
