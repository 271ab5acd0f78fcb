from __future__ import annotations

import json
import urllib.request

from django.core.management.base import BaseCommand, CommandError

from queueing.management.slots import slots_by_id
from queueing.services import draws


class Command(BaseCommand):
    help = (
        "Check a draw: recompute sha256(seed) against the commitment, the entrants hash against the entrant "
        "list, and every entrant's position from the seed, from what GET /api/slots/<id>/draw publishes "
        "(--url, --file) or from the database. Prints each difference and exits 1 if there is any."
    )

    def add_arguments(self, parser):
        parser.add_argument("slot", type=int, help="Slot id")
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--url", help="Base URL of a running site, e.g. http://127.0.0.1:8000: check its API")
        source.add_argument("--file", help="A saved answer of GET /api/slots/<id>/draw (JSON)")

    def handle(self, *args, slot, url=None, file=None, **options):
        if url:
            with urllib.request.urlopen(f"{url.rstrip('/')}/api/slots/{slot}/draw", timeout=30) as response:  # noqa: S310
                record = json.load(response)
        elif file:
            with open(file, encoding="utf-8") as handle:
                record = json.load(handle)
        else:
            (found,) = slots_by_id([slot])
            if not found.is_draw:
                raise CommandError(f"slot {slot} is not a draw slot")
            record = draws.published(found)
        problems = draws.verify(record)
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise SystemExit(1)
        self.stdout.write(
            f"draw of slot {slot} verified: commitment, entrants hash ({len(record['entrants'])} entrants) "
            "and every position match"
        )
