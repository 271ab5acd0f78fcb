from django.core.management.base import BaseCommand

from queueing.models import Slot
from queueing.services import reconcile


class Command(BaseCommand):
    help = (
        "Compare, per slot, PostgreSQL's tickets with Redis' holders and the reservation journal. "
        "Exits 1 when they drift apart. With --repair, writes the tickets a crash lost (reserved in Redis, "
        "never committed) and rebuilds Redis from PostgreSQL where it is still wrong. Run after any crash "
        "or Redis incident, and safely at any time: reservations younger than --grace-ms are left alone."
    )

    def add_arguments(self, parser):
        parser.add_argument("--repair", action="store_true", help="Fix what can be fixed")
        parser.add_argument("--slot", type=int, action="append", help="Only this slot id (repeatable)")
        parser.add_argument("--grace-ms", type=int, default=5000, help="Ignore reservations younger than this")

    def handle(self, *args, repair=False, slot=None, grace_ms=5000, **options):
        slots = list(Slot.objects.select_related("location").filter(pk__in=slot)) if slot else None
        reports = reconcile.reconcile(slots, repair=repair, grace_ms=grace_ms)
        drifted = 0
        for report in reports:
            state = "DRIFT" if report.drift else "ok"
            self.stdout.write(
                f"slot {report.slot.pk} {report.slot}: {state}; PostgreSQL holding {report.pg_holding}, "
                f"Redis sold {report.redis_sold}"
            )
            for entry in report.missing_in_pg:
                self.stdout.write(f"  missing in PostgreSQL: #{entry['number']} {entry['code']} user {entry['user']}")
            for code in report.missing_in_redis:
                self.stdout.write(f"  missing in Redis: {code}")
            for problem in report.problems:
                self.stdout.write(f"  {problem}")
            for code in report.repaired:
                self.stdout.write(self.style.SUCCESS(f"  restored ticket {code}"))
            drifted += report.drift
        summary = f"{len(reports)} slot(s) checked, {drifted} with drift"
        if repair:
            self.stdout.write(self.style.SUCCESS(f"{summary}; repaired."))
            return
        if drifted:
            self.stderr.write(self.style.ERROR(f"{summary}. Run with --repair to fix."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(summary))
