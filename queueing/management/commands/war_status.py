from __future__ import annotations

import io
import signal
import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Q
from rich.console import Console
from rich.live import Live
from rich.table import Table

from queueing.models import Slot, Ticket
from queueing.services import clock, quota, warroom


class Command(BaseCommand):
    help = (
        "Show every upcoming war as a table: slot, opens in (by the server clock), quota, remaining, tickets. "
        "With --watch, show the war room's figures instead (today's wars, or --slot), refreshed every "
        "--interval seconds: remaining, tickets, requests per second by outcome, time since opening. "
        "Ctrl-C or SIGTERM stops watching."
    )

    def add_arguments(self, parser):
        parser.add_argument("--watch", action="store_true", help="Refresh the war room's figures until stopped")
        parser.add_argument("--slot", type=int, action="append", help="With --watch: only this slot (repeatable)")
        parser.add_argument("--interval", type=float, default=1.0, help="With --watch: seconds between refreshes")
        parser.add_argument("--count", type=int, help="With --watch: stop after this many refreshes")

    def handle(self, *args, watch=False, slot=None, interval=1.0, count=None, **options):
        if watch:
            return self.watch(slot, interval, count)
        now = clock.redis_now()
        slots = (
            Slot.objects.select_related("location")
            .filter(pk__in=[s.pk for s in quota.upcoming_slots()])
            .annotate(n_tickets=Count("tickets", filter=Q(tickets__status__in=Ticket.HOLDING)))
            .order_by("war_opens_at", "location__name")
        )
        remaining = quota.remaining_for(slots)
        header = f"{'id':>4}  {'slot':<40} {'opens in':>12} {'quota':>6} {'remaining':>9} {'tickets':>7}"
        self.stdout.write(header)
        for slot in slots:
            delta = (slot.war_opens_at - now).total_seconds()
            if now >= slot.closes_at:
                opens = "closed"
            elif delta <= 0:
                opens = "OPEN"
            else:
                opens = f"{int(delta // 3600)}h{int(delta % 3600 // 60):02d}m{int(delta % 60):02d}s"
            left = remaining.get(slot.pk)
            self.stdout.write(
                f"{slot.pk:>4}  {str(slot)[:40]:<40} {opens:>12} {slot.quota:>6} "
                f"{'-' if left is None else left:>9} {slot.n_tickets:>7}"
            )
        self.stdout.write(f"{len(slots)} slot(s); server time {now:%Y-%m-%d %H:%M:%S %Z}")

    def watch(self, slot_ids: list[int] | None, interval: float, count: int | None) -> None:
        if interval < 0.2:
            raise CommandError("--interval must be at least 0.2 seconds")
        stopping = []
        previous = signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        sampler = warroom.Sampler(slot_ids)
        frames = 0
        live = Live(console=Console(), auto_refresh=False) if self.stdout.isatty() else None
        try:
            if live:
                live.start()
            while not stopping and (count is None or frames < count):
                started = time.monotonic()
                table = figures_table(sampler.sample())
                frames += 1
                if live:
                    live.update(table, refresh=True)
                else:
                    # Not a terminal (a log, a pipe): each refresh printed in turn.
                    buffer = io.StringIO()
                    Console(file=buffer, width=170).print(table)
                    self.stdout.write(buffer.getvalue(), ending="")
                if count is not None and frames >= count:
                    break
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass
        finally:
            if live:
                live.stop()
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(f"war_status: {frames} refresh(es)")


def _rate(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _since(ms: int) -> str:
    sign = "-" if ms < 0 else ""
    seconds = abs(ms) // 1000
    return f"{sign}{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


SHORT = {
    "reserved": "reserved",
    "too_early": "too early",
    "sold_out": "sold out",
    "already_reserved": "already",
    "one_per_day": "1/day",
    "rate_limited": "limited",
    "closed": "closed",
    "errors": "errors",
}


def figures_table(figures: dict) -> Table:
    """The war room's figures as a terminal table: each outcome as requests/s and the total count."""
    table = Table(title=f"War room — server time {figures['server_time'][:19]}", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("slot", no_wrap=True, max_width=34, overflow="ellipsis")
    table.add_column("state")
    table.add_column("since open", justify="right")
    table.add_column("left", justify="right")
    table.add_column("tickets", justify="right")
    for code in warroom.SHOWN:
        table.add_column(SHORT[code], justify="right", no_wrap=True)
    for slot in figures["slots"]:
        table.add_row(
            str(slot["id"]),
            f"{slot['location']} {slot['date'][5:]} {slot['time_label']}",
            slot["state"],
            _since(slot["since_open_ms"]),
            "-" if slot["remaining"] is None else str(slot["remaining"]),
            f"{slot['tickets']}/{slot['quota']}",
            *(f"{_rate(slot['rates'][code])} · {slot['counts'][code]}" for code in warroom.SHOWN),
        )
    errors = figures["errors"]
    detail = ", ".join(f"{code} {n}" for code, n in sorted(errors["counts"].items())) or "none"
    table.caption = (
        f"Each outcome: requests/s · total. Errors outside the script (all slots): {_rate(errors['rate'])}/s; "
        f"totals: {detail}"
    )
    return table
