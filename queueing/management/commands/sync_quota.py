from django.core.management.base import BaseCommand, CommandError

from queueing.management.slots import slots_by_id
from queueing.services import heal, quota


class Command(BaseCommand):
    help = (
        "Bring Redis up to PostgreSQL: if Redis restarted (empty or from an older dump) rebuild every "
        "upcoming war day from PostgreSQL's tickets, then set each slot's quota and war times, and the slot "
        "catalog. Self-heal does the same by itself within seconds (live_quota, Celery beat, requests), so "
        "this is for start-up and for the impatient. Safe during a live war: slots Redis already knows only "
        "get their quota and times updated. --rebuild replaces the selected slots' war days from PostgreSQL "
        "(forgets reservations not yet committed: only when no war of that day is live)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--slot", type=int, action="append", help="Only this slot id (repeatable)")
        parser.add_argument("--rebuild", action="store_true", help="Rebuild the slots' war days from PostgreSQL")

    def handle(self, *args, slot=None, rebuild=False, **options):
        slots = None
        if slot:
            slots = slots_by_id(slot)
        else:
            healed = heal.check_and_heal(sweep=False)
            if healed:
                self.stdout.write(f"Redis rebuilt from PostgreSQL ({healed.reason}): {healed.days} war day(s).")
            elif not heal.wait_until_trusted(timeout=heal.LOCK_MS / 1000):
                # Syncing on top of another process' rebuild would lift its pending marks too early.
                raise CommandError("another process is rebuilding Redis and has not finished; try again")
        try:
            results = quota.sync_all(slots, rebuild=rebuild)
        except quota.QuotaError as exc:
            raise CommandError(str(exc)) from exc
        for result in results:
            self.stdout.write(
                f"slot {result.slot_id}: {result.action}, remaining {result.remaining}", self.style.NOTICE
            )
        self.stdout.write(self.style.SUCCESS(f"Synced {len(results)} slot(s) and the catalog."))
