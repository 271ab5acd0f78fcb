from django.core.management.base import BaseCommand

from queueing.management.slots import slots_by_id
from queueing.services import reconcile


class Command(BaseCommand):
    help = (
        "Compare PostgreSQL with Redis for every upcoming slot (or --slot): quota, opening and closing times, "
        "holders, the sold counter, the war day's person entries and the journal, from one consistent Redis "
        "snapshot per war day. Exits 1 on drift. --repair fixes what is safe during a live war: writes the "
        "rows a crash lost, releases seats of tickets PostgreSQL cancelled, adds to Redis the tickets it "
        "lacks, sets quota and times from PostgreSQL, closes orphan journal entries. It never rebuilds a "
        "live slot (self-heal rebuilds a Redis that lost its state). Celery beat runs the check every minute."
    )

    def add_arguments(self, parser):
        parser.add_argument("--repair", action="store_true", help="Fix what can be fixed safely")
        parser.add_argument("--slot", type=int, action="append", help="Only this slot id (repeatable)")
        parser.add_argument("--grace-ms", type=int, default=5000, help="Leave reservations younger than this alone")

    def handle(self, *args, repair=False, slot=None, grace_ms=5000, **options):
        slots = None
        if slot:
            slots = slots_by_id(slot)
        reports = reconcile.reconcile(slots, repair=repair, grace_ms=grace_ms)
        if slots is None:
            reconcile.record(reports)
        drifted = 0
        for report in reports:
            state = "DRIFT" if report.drift else "ok"
            self.stdout.write(
                f"slot {report.slot.pk} {report.slot}: {state}; PostgreSQL holding {report.pg_holding}, "
                f"Redis sold {report.redis_sold}"
            )
            for line in report.lines():
                self.stdout.write(f"  {line}")
            for line in report.repaired:
                self.stdout.write(self.style.SUCCESS(f"  {line}"))
            drifted += report.drift
        summary = f"{len(reports)} slot(s) checked, {drifted} with drift"
        if drifted and not repair:
            self.stderr.write(self.style.ERROR(f"{summary}. Run with --repair to fix."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(f"{summary}{'; repaired' if drifted else ''}."))
