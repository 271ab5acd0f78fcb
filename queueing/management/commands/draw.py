from __future__ import annotations

import argparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from queueing.management.slots import slots_by_id
from queueing.services import draws


class Command(BaseCommand):
    help = (
        "Make a draw slot's draw now if it is not made yet, and make sure Redis has its result (live_quota "
        "and Celery beat do this by themselves at draw_at; running it twice draws once). Exit 1 if another "
        "process holds the draw's lock."
    )

    def add_arguments(self, parser):
        parser.add_argument("slot", type=int, help="Slot id")
        # Test-only (honoured only with WAR_FAULT_INJECTION under WAR_TESTING): die mid-draw.
        parser.add_argument("--fault", choices=["kill-before-commit", "kill-after-commit"], help=argparse.SUPPRESS)

    def handle(self, *args, slot, fault=None, **options):
        (found,) = slots_by_id([slot])
        if not found.is_draw:
            raise CommandError(f"slot {slot} is not a draw slot")
        if fault and not settings.WAR_FAULT_INJECTION:
            raise CommandError("--fault needs WAR_FAULT_INJECTION (tests only)")
        run = draws.run_draw(slot, fault=fault)
        if run is None:
            self.stderr.write(f"slot {slot}: another process is drawing it right now")
            raise SystemExit(1)
        what = "drawn" if run.committed else "already drawn"
        self.stdout.write(f"slot {slot}: {what}; Redis {'updated' if run.applied else 'already had the result'}")
